//! Push webhooks through the LB to a farm of two members over a real OpenSSH upstream (polling
//! set far beyond the test, so only webhooks can explain what happens): a signed push makes every
//! member serve it (the time is printed); a forged one is refused (401) and does nothing; a
//! repository created upstream with its repository event is served at once; unknown
//! repositories are ignored (202); a body over the limit gets 413. Signatures as GitHub documents
//! them (fixtures in tests/fixtures/forges).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::{following_lb, gossip_port, main_of, ssh_farm_on};
use mirrorfarm_tests::forge_standin::{fixture, hub_signature, ForgeStandin, Kind};
use mirrorfarm_tests::lb::Lb;
use mirrorfarm_tests::node::{Node, Placement};
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{wait_for, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(90);
const SECRET: &str = "webhook-secret-for-tests";

/// GitHub's documented event of `kind`, about `full_name`.
fn github_event(file: &str, full_name: &str) -> Vec<u8> {
    let mut v = fixture(file);
    v["repository"]["full_name"] = serde_json::json!(full_name);
    v["repository"]["name"] = serde_json::json!(full_name.rsplit('/').next());
    serde_json::to_vec(&v).expect("json")
}

/// POSTs a webhook through the LB; returns the status and body.
fn deliver(lb: &Lb, dir: &Path, event: &str, body: &[u8], sig: &str) -> (u16, String) {
    let file = dir.join("body.json");
    std::fs::write(&file, body).expect("write body");
    let data = format!("@{}", file.display());
    let out: Output = lb.curl(
        "/rest/mirroring/latest/webhook",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("X-GitHub-Event: {event}"),
            "-H",
            &format!("X-Hub-Signature-256: {sig}"),
            "--data-binary",
            &data,
            "-w",
            "\n%{http_code}",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn served_everywhere(nodes: &[Node], sha: &str) -> bool {
    nodes.iter().all(|n| main_of(n).as_deref() == Some(sha))
}

#[test]
fn webhooks_through_the_lb_sync_the_named_repository_on_every_member() {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.create("P", "other", &Shape::small());
    up.start_sshd();
    let forge = ForgeStandin::start(Kind::Github, &up.root(), "forge-token-0123456789", 50);
    let secrets = tempfile::tempdir().expect("secrets");
    let extra = forge.webhook_member_props(secrets.path(), SECRET);
    let nodes = ssh_farm_on(&up, 2, LIMIT, &extra, &Placement::default());
    wait_for("both repositories on every member", LIMIT, || {
        nodes
            .iter()
            .all(|n| {
                n.repo_status("P", "other")
                    .is_some_and(|r| r["state"] == "SYNCHRONIZED")
            })
            .then_some(())
    });
    let lb = following_lb(gossip_port(&nodes[0]));
    lb.wait_healthy(2, LIMIT);
    let work = tempfile::tempdir().expect("work");
    // A delivery signed with the farm's secret, as the forge sends it.
    let signed = |event: &str, body: &[u8]| {
        deliver(&lb, work.path(), event, body, &hub_signature(SECRET, body))
    };

    // A signed push: every member serves it.
    let pushed = up.commit("P", "r", "main", "pushed upstream");
    let t = Instant::now();
    let body = github_event("github/webhook_push.json", "P/r");
    let (code, answer) = signed("push", &body);
    assert_eq!(code, 202, "{answer}");
    assert!(answer.contains("P/r"), "{answer}");
    wait_or_explain(
        "the push served by every member",
        LIMIT,
        || served_everywhere(&nodes, &pushed).then_some(()),
        || {
            nodes
                .iter()
                .map(|n| n.explain(30))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    println!(
        "webhook → served by every member: {} ms",
        t.elapsed().as_millis()
    );

    // A forged push is refused and does nothing: a later signed one for another repository is
    // served while P/r stays where it was.
    let before = main_of(&nodes[0]).expect("main");
    let second = up.commit("P", "r", "main", "not announced");
    let body = github_event("github/webhook_push.json", "P/r");
    let (code, _) = deliver(
        &lb,
        work.path(),
        "push",
        &body,
        &hub_signature("wrong secret", &body),
    );
    assert_eq!(code, 401);
    let (code, _) = deliver(&lb, work.path(), "push", &body, "");
    assert_eq!(code, 401, "unsigned");
    let other = up.commit("P", "other", "main", "announced");
    let body = github_event("github/webhook_push.json", "P/other");
    let (code, _) = signed("push", &body);
    assert_eq!(code, 202);
    wait_for("P/other's push on every member", LIMIT, || {
        nodes
            .iter()
            .all(|n| {
                mirrorfarm_tests::gitc::ls_remote(&n.http_url("P", "other"), &[])
                    .get("refs/heads/main")
                    == Some(&other)
            })
            .then_some(())
    });
    assert!(
        served_everywhere(&nodes, &before) && before != second,
        "a forged webhook must not sync"
    );

    // A repository created upstream, with its repository event: served at once.
    up.create("P", "fresh", &Shape::small());
    let body = github_event("github/webhook_repository_created.json", "P/fresh");
    let (code, answer) = signed("repository", &body);
    assert_eq!(
        (code, answer.contains("relist")),
        (202, true),
        "{answer}\nLB: {}\n{}",
        lb.log(),
        nodes
            .iter()
            .map(|n| n.explain(30))
            .collect::<Vec<_>>()
            .join("\n")
    );
    wait_for("the new repository served by every member", LIMIT, || {
        nodes
            .iter()
            .all(|n| {
                n.repo_status("P", "fresh")
                    .is_some_and(|r| r["state"] == "SYNCHRONIZED")
            })
            .then_some(())
    });

    // Unknown repositories are ignored; a large body is refused before it is read.
    let body = github_event("github/webhook_push.json", "ELSEWHERE/x");
    let (code, answer) = signed("push", &body);
    assert_eq!(
        (code, answer.contains("ignored")),
        (202, true),
        "{answer}\nLB: {}",
        lb.log()
    );
    let big = vec![b' '; 2 << 20];
    let (code, _) = signed("push", &big);
    assert_eq!(code, 413);
}
