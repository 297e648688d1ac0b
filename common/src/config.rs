//! Configuration building blocks shared by the node and the load balancer: the error that names
//! file, line and key; values that remember their line; reading a properties file into known keys
//! only; and the validators for the value kinds both roles use.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::properties;

/// A configuration error naming the file, and where known the line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// Path of the file.
        file: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A bad line, key or value.
    #[error("{file}:{line}: {key}: {message}")]
    At {
        /// Path of the file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key on that line (empty for syntax errors).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A required key is missing, or keys disagree.
    #[error("{file}: {key}: {message}")]
    Missing {
        /// Path of the file.
        file: PathBuf,
        /// The key concerned.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A value with the line it came from.
#[derive(Debug, Clone)]
pub struct Located {
    /// Raw value (trimmed).
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// A parsed-file struct: one `Option<Located>` per known key.
pub trait KnownKeys: Default {
    /// The field for `key`, or `None` for an unknown key.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Located>>;
}

/// Reads `text` (of `file`) into a `T`: syntax errors, unknown keys and duplicates are refused with
/// their line. `role` names the reader in the unknown-key message.
pub fn read_known_keys<T: KnownKeys>(
    file: &Path,
    text: &str,
    role: &str,
) -> Result<T, ConfigError> {
    let entries = properties::parse(text).map_err(|e| ConfigError::At {
        file: file.to_owned(),
        line: e.line,
        key: String::new(),
        message: e.message,
    })?;
    let mut t = T::default();
    for e in entries {
        let at = |message: String| ConfigError::At {
            file: file.to_owned(),
            line: e.line,
            key: e.key.clone(),
            message,
        };
        let target = t.slot(&e.key).ok_or_else(|| {
            at(format!(
                "unknown key (see the README for the keys {role} reads)"
            ))
        })?;
        if let Some(prev) = target {
            return Err(at(format!(
                "duplicate key (first set on line {})",
                prev.line
            )));
        }
        *target = Some(Located {
            value: e.value.trim().to_owned(),
            line: e.line,
        });
    }
    Ok(t)
}

/// Reads a whole file into a string, or the error naming it.
pub fn read_file(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })
}

/// Validators that turn located values into typed ones, with errors naming file, line and key.
pub struct Validator<'a> {
    /// The file being validated.
    pub file: &'a Path,
}

impl Validator<'_> {
    /// An error at `l`'s line about `key`.
    pub fn at(&self, l: &Located, key: &str, message: &str) -> ConfigError {
        ConfigError::At {
            file: self.file.to_owned(),
            line: l.line,
            key: key.to_owned(),
            message: format!("{message} (got {:?})", l.value),
        }
    }

    /// An error about a key with no line (missing, or a conflict between keys).
    pub fn missing(&self, key: &str, message: &str) -> ConfigError {
        ConfigError::Missing {
            file: self.file.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }

    /// A key that must be present.
    pub fn required<'l>(
        &self,
        l: &'l Option<Located>,
        key: &str,
    ) -> Result<&'l Located, ConfigError> {
        l.as_ref()
            .ok_or_else(|| self.missing(key, "required key is missing"))
    }

    /// A whole number within `range`, or `default` when absent.
    pub fn number(
        &self,
        l: &Option<Located>,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match l {
            None => Ok(default),
            Some(l) => l
                .value
                .parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    self.at(
                        l,
                        key,
                        &format!(
                            "must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        }
    }

    /// Whole seconds from 1 to a week, or `default` when absent.
    pub fn seconds(
        &self,
        l: &Option<Located>,
        key: &str,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        self.number(l, key, 1..=7 * 86_400, default)
            .map(Duration::from_secs)
    }

    /// `true` or `false`, or `default` when absent.
    pub fn boolean(
        &self,
        l: &Option<Located>,
        key: &str,
        default: bool,
    ) -> Result<bool, ConfigError> {
        match l {
            None => Ok(default),
            Some(l) => match l.value.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(self.at(l, key, "must be `true` or `false`")),
            },
        }
    }

    /// An address key and a port key, with defaults.
    pub fn addr(
        &self,
        address: &Option<Located>,
        akey: &str,
        default_ip: IpAddr,
        port: &Option<Located>,
        pkey: &str,
        default_port: u16,
    ) -> Result<SocketAddr, ConfigError> {
        let ip = match address {
            None => default_ip,
            Some(l) => l.value.parse::<IpAddr>().map_err(|_| {
                self.at(
                    l,
                    akey,
                    "must be an IP address such as 0.0.0.0 or 127.0.0.1",
                )
            })?,
        };
        let port = self.port(port, pkey, default_port)?;
        Ok(SocketAddr::new(ip, port))
    }

    /// A farm secret: at least 16 characters; the error never shows the value.
    pub fn farm_secret(&self, l: &Located, key: &str) -> Result<String, ConfigError> {
        if l.value.len() < 16 {
            // Not `at`: that error quotes the value.
            return Err(ConfigError::At {
                file: self.file.to_owned(),
                line: l.line,
                key: key.to_owned(),
                message: "must be at least 16 characters (the value is not shown)".into(),
            });
        }
        Ok(l.value.clone())
    }

    /// A comma list of gossip seeds, each `host:port` (port 1–65535); may be empty.
    pub fn seeds(&self, l: &Located, key: &str) -> Result<Vec<String>, ConfigError> {
        l.value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                    Ok(s.to_owned())
                }
                _ => Err(self.at(l, key, &format!("{s:?}: expected host:port"))),
            })
            .collect()
    }

    /// This host's gossip address: an address key (required, and not 0.0.0.0 or `::`, since
    /// peers use it to reach this host) and a port key with a default.
    pub fn gossip_addr(
        &self,
        address: &Option<Located>,
        akey: &str,
        port: &Option<Located>,
        pkey: &str,
        default_port: u16,
    ) -> Result<SocketAddr, ConfigError> {
        let addr = self.addr(
            address,
            akey,
            IpAddr::from([0, 0, 0, 0]),
            port,
            pkey,
            default_port,
        )?;
        if addr.ip().is_unspecified() {
            let what = "this host's address that the other farm members reach";
            return Err(match address {
                Some(l) => self.at(l, akey, &format!("must be {what}")),
                None => self.missing(akey, &format!("set it to {what}")),
            });
        }
        Ok(addr)
    }

    /// A port number, or `default` when absent.
    pub fn port(&self, l: &Option<Located>, key: &str, default: u16) -> Result<u16, ConfigError> {
        match l {
            None => Ok(default),
            Some(l) => l
                .value
                .parse::<u16>()
                .map_err(|_| self.at(l, key, "must be a port number from 0 to 65535")),
        }
    }
}

/// The local address the kernel would send to the first seed that resolves from (no packet is
/// sent: a UDP socket is only connected).
pub fn local_ip_toward(seeds: &[String]) -> Result<IpAddr, std::io::Error> {
    use std::net::ToSocketAddrs;
    let mut last = String::from("no seeds");
    for seed in seeds {
        let addrs = match seed.to_socket_addrs() {
            Ok(a) => a,
            Err(e) => {
                last = format!("{seed}: {e}");
                continue;
            }
        };
        for a in addrs {
            let any: SocketAddr = if a.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let local = std::net::UdpSocket::bind(any)
                .and_then(|s| s.connect(a).map(|_| s))
                .and_then(|s| s.local_addr());
            match local {
                Ok(l) if !l.ip().is_unspecified() => return Ok(l.ip()),
                Ok(_) => last = format!("{seed}: no route"),
                Err(e) => last = format!("{seed}: {e}"),
            }
        }
    }
    Err(std::io::Error::other(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_duplicate_keys_name_their_line() {
        #[derive(Default)]
        struct A(Option<Located>);
        impl KnownKeys for A {
            fn slot(&mut self, key: &str) -> Option<&mut Option<Located>> {
                (key == "a").then_some(&mut self.0)
            }
        }
        let f = Path::new("/x.properties");
        let err = read_known_keys::<A>(f, "a=1\nb=2\n", "it")
            .err()
            .expect("b");
        assert_eq!(
            err.to_string(),
            "/x.properties:2: b: unknown key (see the README for the keys it reads)"
        );
        let err = read_known_keys::<A>(f, "a=1\n\na=2\n", "it")
            .err()
            .expect("dup");
        assert!(err
            .to_string()
            .starts_with("/x.properties:3: a: duplicate key (first set on line 1)"));
        let v = Validator { file: f };
        let l = Some(Located {
            value: "x".into(),
            line: 4,
        });
        assert!(v
            .boolean(&l, "k", true)
            .expect_err("bool")
            .to_string()
            .contains(":4: k:"));
        assert_eq!(v.number(&None, "k", 1..=3, 2).expect("default"), 2);
    }
}
