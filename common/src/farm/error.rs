//! Errors on the farm channel, with the peer they concern.

/// Why an exchange with a farm member failed.
#[derive(Debug, thiserror::Error)]
pub enum FarmError {
    /// The member refused (wrong secret, other configuration) or could not prove the farm
    /// secret itself: trying again will not help.
    #[error("{peer}: {why}")]
    Refused {
        /// The member's address.
        peer: String,
        /// What it said, or what was wrong with its answer.
        why: String,
    },
    /// No TCP connection.
    #[error("{peer}: cannot connect: {source}")]
    Connect {
        /// The member's address.
        peer: String,
        /// Cause.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{peer}: no answer within {secs} s")]
    Timeout {
        /// The member's address.
        peer: String,
        /// The limit.
        secs: u64,
    },
    /// The TLS handshake failed (e.g. not a certificate of the farm CA for that member).
    #[error("{peer}: TLS: {source}")]
    Tls {
        /// The member's address.
        peer: String,
        /// Cause.
        source: std::io::Error,
    },
    /// HTTP failed on the joining connection.
    #[error("{peer}: HTTP: {source}")]
    Http {
        /// The member's address.
        peer: String,
        /// Cause.
        source: hyper::Error,
    },
    /// A request through the farm client failed.
    #[error("{peer}: {source}")]
    Request {
        /// The member's address.
        peer: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The member answered with an unexpected HTTP status.
    #[error("{peer} answered HTTP {status}")]
    Status {
        /// The member's address.
        peer: String,
        /// HTTP status.
        status: u16,
    },
    /// The member's answer did not parse.
    #[error("{peer}: malformed answer: {why}")]
    Malformed {
        /// The member's address.
        peer: String,
        /// What was wrong.
        why: String,
    },
    /// A farm certificate or key (PEM) did not load.
    #[error("farm certificate: {0}")]
    Certificate(String),
}

impl FarmError {
    /// Whether trying again (later, or another seed) cannot help.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}
