//! The mirrorfarm load balancer, on Pingora: TLS termination, `BITBUCKETSESSIONID` stickiness,
//! SSH passthrough, health checks of the nodes, and an admin status listener.

pub mod admin;
pub mod backends;
pub mod background;
pub mod cert_check;
pub mod config;
pub mod discovery;
pub mod fast_front;
pub mod health;
pub mod http_proxy;
pub mod metrics;
pub mod request_head;
pub mod response_head;
pub mod retry;
pub mod rules;
pub mod server;
pub mod ssh_proxy;
pub mod tls;
pub mod upstream_get;
