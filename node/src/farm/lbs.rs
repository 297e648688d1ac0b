//! The load balancers in front of the farm, as they report themselves over the farm channel
//! (`POST /farm/lb`, LB certificates only): hostname, certificate, backends. A report older than
//! [`STALE`] is dropped (the LB stopped, or cannot reach this member).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mirrorfarm_common::farm::messages::LbReport;
use mirrorfarm_common::url_host::url_host;
use parking_lot::Mutex;

/// How long a report counts.
pub const STALE: Duration = Duration::from_secs(60);

/// The reports, by LB ID.
#[derive(Default)]
pub struct LoadBalancers {
    reports: Mutex<HashMap<String, (Instant, LbReport)>>,
}

impl LoadBalancers {
    /// Records `report` from LB `id`.
    pub fn record(&self, id: &str, report: LbReport) {
        let mut r = self.reports.lock();
        r.retain(|_, (at, _)| at.elapsed() < STALE);
        if r.len() < 64 || r.contains_key(id) {
            r.insert(id.to_owned(), (Instant::now(), report));
        }
    }

    /// The current reports: LB ID, seconds since it reported, the report.
    pub fn current(&self) -> Vec<(String, u64, LbReport)> {
        let mut out: Vec<(String, u64, LbReport)> = self
            .reports
            .lock()
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < STALE)
            .map(|(id, (at, r))| (id.clone(), at.elapsed().as_secs(), r.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The warnings a member draws from the LBs' reports: its `setup.baseUrl` names another host than
/// an LB's hostname; an LB's certificate expires within 30 days.
pub fn warnings(base_url: &str, reports: &[(String, u64, LbReport)], now_unix: i64) -> Vec<String> {
    let mut out = Vec::new();
    let ours = url_host(base_url);
    for (id, _, r) in reports {
        if ours != r.hostname.to_ascii_lowercase() {
            out.push(format!(
                "setup.baseUrl names host {ours}, but the load balancer {id} serves the farm as {}: clients are sent to a name the LB does not answer for (set setup.baseUrl to https://{}…)",
                r.hostname, r.hostname
            ));
        }
        let left = r.certificate.not_after - now_unix;
        if left < 30 * 86_400 {
            out.push(format!(
                "the load balancer {id}'s certificate ({}) expires in {} days",
                r.certificate.subject,
                left.max(0) / 86_400
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirrorfarm_common::farm::messages::LbCertificate;

    fn report(hostname: &str, not_after: i64) -> LbReport {
        LbReport {
            hostname: hostname.into(),
            https_port: 443,
            certificate: LbCertificate {
                subject: "CN=git.example.com".into(),
                not_after,
                sha256: String::new(),
            },
            backends: Vec::new(),
            version: "0".into(),
        }
    }

    #[test]
    fn base_url_and_certificate_warnings() {
        let now = 1_000_000_000;
        let good = vec![(
            "lb-1".to_owned(),
            1,
            report("git.example.com", now + 90 * 86_400),
        )];
        assert!(warnings("https://git.example.com", &good, now).is_empty());
        let w = warnings("https://mirror.example.com", &good, now);
        assert!(
            w[0].contains("mirror.example.com") && w[0].contains("git.example.com"),
            "{w:?}"
        );
        let soon = vec![(
            "lb-1".to_owned(),
            1,
            report("git.example.com", now + 5 * 86_400),
        )];
        let w = warnings("https://git.example.com", &soon, now);
        assert!(w[0].contains("expires in 5 days"), "{w:?}");
    }
}
