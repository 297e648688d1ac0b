//! What the mirrorfarm load balancer and nodes share: the properties reader, configuration
//! building blocks, the session cookie, the PROXY protocol codec and the farm join protocol.

pub mod config;
pub mod farm_join;
pub mod gossip;
pub mod properties;
pub mod proxy_protocol;
pub mod session;
