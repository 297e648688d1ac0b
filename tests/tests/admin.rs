//! Admin routes locked: the sync trigger and `/metrics` answer a caller that is neither the node's
//! own host nor holds the admin token with 401; in authenticated mode `/status` and `/` show such
//! a caller — and anyone through the LB — only what anyone may see. A request relayed by a proxy on
//! the node's host (it carries `X-Forwarded-For`) is not the host's own.

use std::time::Duration;

use mirrorfarm_tests::lb::{backends, Lb};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "admin-token-for-tests-0123456789";

fn private_fields_absent(doc: &serde_json::Value, upstream: &str) {
    let text = doc.to_string();
    assert!(doc["repos"].as_array().is_some_and(Vec::is_empty), "{doc}");
    assert!(
        doc["members"].as_array().is_some_and(Vec::is_empty),
        "{doc}"
    );
    assert_eq!(doc["upstream"]["url"], "", "{doc}");
    assert!(!text.contains(upstream), "the upstream URL leaked: {doc}");
    assert!(
        !text.contains("P/r") && !text.contains("\"r\""),
        "a repository name leaked: {doc}"
    );
    // What anyone may see is there.
    assert_eq!(doc["state"], "SYNCHRONIZED");
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["totalRepos"], 1);
    assert!(
        doc["publicKey"]
            .as_str()
            .is_some_and(|k| k.starts_with("ssh-")),
        "{doc}"
    );
}

#[test]
fn admin_routes_need_the_token_or_the_nodes_own_host() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let node = Node::start(
        &up.file_url(),
        &format!(
            "mirror.repos=P/r\nmirror.access=authenticated\nmirror.admin.tokenFile={}\n\
             plugin.mirroring.upstream.auth.url=https://127.0.0.1:9/scm\n",
            token_file.display()
        ),
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let base = format!("http://127.0.0.1:{}", node.http);
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let trigger = |headers: &[(&str, &str)]| {
        let mut r = http
            .post(format!("{base}/rest/mirroring/latest/sync"))
            .json(&serde_json::json!({"project": "P", "repo": "r"}));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().expect("trigger")
    };
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut r = http.get(format!("{base}{path}"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().expect("get")
    };
    let relayed = ("X-Forwarded-For", "198.51.100.7");
    let bearer = format!("Bearer {TOKEN}");
    let admin = ("Authorization", bearer.as_str());
    let wrong = ("Authorization", "Bearer admin-token-for-tests-WRONG");

    // The node's own host.
    assert_eq!(trigger(&[]).status().as_u16(), 202);
    assert_eq!(get("/metrics", &[]).status().as_u16(), 200);
    let full: serde_json::Value = get("/status", &[]).json().expect("status");
    assert_eq!(full["repos"][0]["repo"], "r", "{full}");

    // Another caller (relayed): 401 without the token, or with a wrong one.
    for h in [&[relayed][..], &[relayed, wrong][..]] {
        let r = trigger(h);
        assert_eq!(r.status().as_u16(), 401);
        assert!(r
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("Bearer"))));
        assert_eq!(get("/metrics", h).status().as_u16(), 401);
        let doc: serde_json::Value = get("/status", h).json().expect("status");
        private_fields_absent(&doc, &up.file_url());
        let page = get("/", h).text().expect("page");
        assert!(
            !page.contains(&up.file_url()),
            "the page leaked the upstream"
        );
    }
    // With the token: everything.
    assert_eq!(trigger(&[relayed, admin]).status().as_u16(), 202);
    assert_eq!(get("/metrics", &[relayed, admin]).status().as_u16(), 200);
    let doc: serde_json::Value = get("/status", &[relayed, admin]).json().expect("status");
    assert_eq!(doc["upstream"]["url"], up.file_url().as_str(), "{doc}");

    // Through the LB: the health check still works (the node comes into rotation) and /status
    // shows none of the private fields.
    let lb = Lb::start(&backends(&[&node]), "");
    lb.wait_healthy(1, LIMIT);
    let out = lb.curl("/status", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status through the LB");
    private_fields_absent(&doc, &up.file_url());
}

#[test]
fn a_missing_or_short_admin_token_exits_64_naming_the_key() {
    use mirrorfarm_tests::free_port;
    use mirrorfarm_tests::node::{properties, run_expecting_exit};
    let secrets = tempfile::tempdir().expect("tempdir");
    let short = secrets.path().join("short.token");
    std::fs::write(&short, "short\n").expect("write");
    for file in [secrets.path().join("missing.token"), short] {
        let home = tempfile::tempdir().expect("tempdir");
        let extra = format!(
            "mirror.repos=P/r\nmirror.admin.tokenFile={}\n",
            file.display()
        );
        let text = properties("file:///srv/git", free_port(), free_port(), &extra);
        std::fs::write(home.path().join("mirrorfarm.properties"), &text).expect("write");
        let (code, err) = run_expecting_exit(home.path(), LIMIT);
        assert_eq!(code, Some(64), "{err}");
        assert!(err.contains(": mirror.admin.tokenFile: "), "{err}");
        assert!(
            !err.contains("short\n"),
            "the token's content is never shown: {err}"
        );
    }
}
