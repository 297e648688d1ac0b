//! What the LB checks of its certificate before serving it: valid now (not expired, not yet to
//! come) and valid for `lb.hostname` (a DNS name of its subject alternative names, a wildcard
//! covering one label, or an IP address name when the hostname is one). A certificate that fails
//! stops the LB at start (exit 64 naming the file) and is not swapped in on reload; one that
//! expires within [`WARN_BEFORE`] is served with a warning.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long before expiry the LB warns.
pub const WARN_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// What the LB reads of its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The subject, as `CN=…, O=…`.
    pub subject: String,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// DNS and IP names of its subject alternative names (the subject's CN when it has none).
    pub names: Vec<String>,
}

impl CertFacts {
    /// Reads a DER certificate.
    pub fn read(der: &[u8]) -> Result<Self, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => names.push(
                            IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                        ),
                        16 => names.push(
                            IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                        ),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_ascii_lowercase),
            );
        }
        Ok(Self {
            subject: cert.subject().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            names,
        })
    }

    /// Whether one of its names covers `hostname`.
    pub fn covers(&self, hostname: &str) -> bool {
        let host = hostname.to_ascii_lowercase();
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return self
                .names
                .iter()
                .any(|n| n.parse::<IpAddr>().ok() == Some(ip));
        }
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *n == host,
        })
    }

    /// Seconds until it expires (negative once it has).
    pub fn expires_in(&self, now: SystemTime) -> i64 {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.not_after - now
    }

    /// Why the LB may not serve it for `hostname` at `now`, if it may not.
    pub fn refusal(&self, hostname: &str, now: SystemTime) -> Option<String> {
        let unix = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if self.not_after < unix {
            return Some(format!(
                "expired {} ({})",
                when(self.not_after),
                self.subject
            ));
        }
        if self.not_before > unix {
            return Some(format!(
                "not valid before {} ({})",
                when(self.not_before),
                self.subject
            ));
        }
        if !self.covers(hostname) {
            return Some(format!(
                "not valid for lb.hostname {hostname} (its names: {})",
                if self.names.is_empty() {
                    "none".to_owned()
                } else {
                    self.names.join(", ")
                }
            ));
        }
        None
    }
}

/// A Unix time as RFC 3339.
pub fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str], not_after_days: i64) -> CertFacts {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(not_after_days);
        p.distinguished_name.push(rcgen::DnType::CommonName, "farm");
        let key = rcgen::KeyPair::generate().expect("key");
        let c = p.self_signed(&key).expect("sign");
        CertFacts::read(c.der()).expect("read")
    }

    #[test]
    fn names_validity_and_expiry() {
        let now = SystemTime::now();
        let c = cert(
            &["git.example.com", "*.mirrors.example.com", "127.0.0.1"],
            90,
        );
        assert!(c.covers("GIT.example.com"));
        assert!(c.covers("eu.mirrors.example.com"));
        assert!(
            !c.covers("a.b.mirrors.example.com"),
            "a wildcard covers one label"
        );
        assert!(!c.covers("mirrors.example.com"));
        assert!(c.covers("127.0.0.1") && !c.covers("127.0.0.2"));
        assert!(!c.covers("git.example.com.evil.com"));
        assert_eq!(c.refusal("git.example.com", now), None);
        let other = c.refusal("other.example.com", now).expect("refused");
        assert!(
            other.contains("not valid for lb.hostname other.example.com"),
            "{other}"
        );
        let expired = cert(&["git.example.com"], -2);
        let why = expired.refusal("git.example.com", now).expect("refused");
        assert!(why.starts_with("expired "), "{why}");
        let soon = cert(&["git.example.com"], 10);
        assert!(soon.refusal("git.example.com", now).is_none());
        let left = soon.expires_in(now);
        assert!(left > 9 * 86_400 && left <= 10 * 86_400, "{left}");
        assert!(Duration::from_secs(left as u64) < WARN_BEFORE);
    }
}
