//! What the mirrorfarm load balancer and nodes share: the properties reader, configuration
//! building blocks, the session cookie, the PROXY protocol codec, the header that sends a request to another node, the farm channel's messages and client, the status document, and reading a URL's host.

pub mod config;
pub mod elsewhere;
pub mod farm;
pub mod gossip;
pub mod properties;
pub mod proxy_protocol;
pub mod session;
pub mod status;
pub mod url_host;
pub mod version;
