//! What the mirrorfarm load balancer and nodes share: the properties reader, configuration
//! building blocks, and the session cookie.

pub mod config;
pub mod properties;
pub mod proxy_protocol;
pub mod session;
