//! Webhook benchmark: a push upstream, then GitHub's signed push webhook POSTed through the LB →
//! the change served by every member of a farm of 3 (each member's ref advertisement polled over
//! HTTP), p50 and p99 over 30 pushes. Baseline, same run and same farm, alternating with the
//! webhook rounds: the admin's sync trigger (`POST /rest/mirroring/latest/sync`) sent straight to a
//! member. Polling is set far beyond the run, so only the webhook or the trigger explains a change.
//!
//! Run: `scripts/bench webhook`.

use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::{following_lb, gossip_port, ssh_farm_on};
use mirrorfarm_tests::forge_standin::{fixture, hub_signature, ForgeStandin, Kind};
use mirrorfarm_tests::measure::until_main_everywhere;
use mirrorfarm_tests::node::{Node, Placement};
use mirrorfarm_tests::upstream::{Shape, Upstream};

const ROUNDS: usize = 30;
const SECRET: &str = "webhook-secret-for-the-bench";

fn pct(times: &[f64], p: f64) -> f64 {
    times[((times.len() as f64 * p) as usize).min(times.len() - 1)]
}

fn visible(nodes: &[Node], sha: &str, since: Instant, client: &reqwest::blocking::Client) -> f64 {
    until_main_everywhere(nodes, sha, since, Duration::from_secs(60), client).as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("webhook: benchmark");
        return;
    }
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let forge = ForgeStandin::start(Kind::Github, &up.root(), "forge-token-0123456789", 100);
    let secrets = tempfile::tempdir().expect("secrets");
    let extra = forge.webhook_member_props(secrets.path(), SECRET);
    let nodes = ssh_farm_on(
        &up,
        3,
        Duration::from_secs(120),
        &extra,
        &Placement::default(),
    );
    let lb = following_lb(gossip_port(&nodes[0]));
    lb.wait_healthy(3, Duration::from_secs(60));
    let mut body = fixture("github/webhook_push.json");
    body["repository"]["full_name"] = serde_json::json!("P/r");
    let body_file = secrets.path().join("push.json");
    let bytes = serde_json::to_vec(&body).expect("json");
    std::fs::write(&body_file, &bytes).expect("body");
    let sig = hub_signature(SECRET, &bytes);
    let client = reqwest::blocking::Client::new();
    let (mut hooks, mut triggers) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS * 2 {
        let sha = up.commit("P", "r", "main", &format!("round {i}"));
        let t = Instant::now();
        if i % 2 == 0 {
            let out = lb.curl(
                "/rest/mirroring/latest/webhook",
                &[
                    "-X",
                    "POST",
                    "-H",
                    "X-GitHub-Event: push",
                    "-H",
                    &format!("X-Hub-Signature-256: {sig}"),
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &format!("@{}", body_file.display()),
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ],
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "202",
                "webhook answered"
            );
            hooks.push(visible(&nodes, &sha, t, &client));
        } else {
            assert_eq!(nodes[i % 3].trigger(Some(("P", "r"))), 202);
            triggers.push(visible(&nodes, &sha, t, &client));
        }
    }
    hooks.sort_by(|a, b| a.total_cmp(b));
    triggers.sort_by(|a, b| a.total_cmp(b));
    let (h50, h99) = (pct(&hooks, 0.5), pct(&hooks, 0.99));
    let (t50, t99) = (pct(&triggers, 0.5), pct(&triggers, 0.99));
    println!("\nfarm of 3 members behind the LB, {ROUNDS} pushes each way, alternating");
    println!(
        "  webhook through the LB → visible on every member   p50 {h50:.3} s   p99 {h99:.3} s"
    );
    println!(
        "  baseline: admin trigger to a member → visible       p50 {t50:.3} s   p99 {t99:.3} s"
    );
    println!(
        "  webhook / trigger: p50 {:.2}×   p99 {:.2}×",
        h50 / t50,
        h99 / t99
    );
}
