//! When a full reconcile is over: every repository was either probed unchanged (not fetched) or
//! fetched — those a probe found changed or could not answer for included — counted from the
//! members' metrics since a mark.

use mirrorfarm_tests::node::Node;

const PROBE: &str = "mirrorfarm_reconcile_probes_total";

fn per_member(nodes: &[Node], name: &str, result: &str) -> Vec<f64> {
    nodes
        .iter()
        .map(|n| n.metric(name, &[("result", result)]))
        .collect()
}

fn delta(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| y - x).collect()
}

/// The members' counts at one moment.
pub struct Mark {
    ok: Vec<f64>,
    failed: Vec<f64>,
    unchanged: Vec<f64>,
    to_fetch: Vec<f64>,
}

/// What the members did since a [`Mark`], per member.
pub struct Since {
    /// Syncs that succeeded.
    pub ok: Vec<f64>,
    /// Syncs that failed.
    pub failed: Vec<f64>,
    /// Repositories probed unchanged.
    pub unchanged: Vec<f64>,
    /// Repositories probed changed or unanswered (to fetch).
    pub to_fetch: Vec<f64>,
}

impl Mark {
    /// The counts now.
    pub fn now(nodes: &[Node]) -> Self {
        let changed = per_member(nodes, PROBE, "changed");
        let unanswered = per_member(nodes, PROBE, "unanswered");
        Self {
            ok: per_member(nodes, "mirrorfarm_syncs_total", "ok"),
            failed: per_member(nodes, "mirrorfarm_syncs_total", "failed"),
            unchanged: per_member(nodes, PROBE, "unchanged"),
            to_fetch: changed
                .iter()
                .zip(&unanswered)
                .map(|(a, b)| a + b)
                .collect(),
        }
    }

    /// The probe counts, per member: unchanged, then changed or unanswered.
    pub fn unchanged_and_to_fetch(&self) -> Vec<f64> {
        self.unchanged
            .iter()
            .chain(&self.to_fetch)
            .copied()
            .collect()
    }

    /// What happened since this mark.
    pub fn since(&self, nodes: &[Node]) -> Since {
        let now = Self::now(nodes);
        Since {
            ok: delta(&self.ok, &now.ok),
            failed: delta(&self.failed, &now.failed),
            unchanged: delta(&self.unchanged, &now.unchanged),
            to_fetch: delta(&self.to_fetch, &now.to_fetch),
        }
    }
}

impl Since {
    /// Whether `n` repositories were all probed unchanged or fetched (with any result), and
    /// every one a probe left to fetch was fetched.
    pub fn covers(&self, n: usize) -> bool {
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        // A failed fetch counts: the reconcile is over for that repository too.
        let fetched = sum(&self.ok) + sum(&self.failed);
        sum(&self.unchanged) + fetched >= n as f64 && fetched >= sum(&self.to_fetch)
    }
}
