//! What the LFS endpoints refuse, and how (an anonymous node over a `file://` upstream; no LFS
//! server is reached): uploads name the upstream's LFS endpoint, malformed or unanswerable batch
//! requests get the batch API's errors, unknown repositories and objects 404, and over SSH
//! `git-lfs-authenticate` answers the server-discovery document while `git-lfs-transfer` is
//! refused at once; `/metrics` carries the LFS counters.

use std::process::Command;
use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::prom;
use mirrorfarm_tests::upstream::{Shape, Upstream};

const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

fn post(node: &Node, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", node.http))
        .header("Content-Type", "application/vnd.git-lfs+json")
        .timeout(Duration::from_secs(20))
        .body(body.to_owned())
        .send()
        .expect("POST");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/vnd.git-lfs+json", "{path}: {status}");
    (status, r.json().expect("JSON body"))
}

fn ssh(node: &Node, command: &str) -> std::process::Output {
    Command::new("ssh")
        .args(node.git_ssh().split(' ').skip(1))
        .args(["-p", &node.ssh.to_string(), "git@127.0.0.1", command])
        .output()
        .expect("ssh")
}

#[test]
fn lfs_requests_the_farm_cannot_answer_are_refused_clearly() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=P/r\nmirror.access=anonymous\n\
         plugin.mirroring.upstream.lfs.url=https://lfs.example.com/{project}/{repo}\n",
    );
    node.wait_state("SYNCHRONIZED", Duration::from_secs(60));
    let batch = "/scm/P/r.git/info/lfs/objects/batch";

    // Uploads: read-only mirror, the upstream's endpoint named.
    let (status, body) = post(
        &node,
        batch,
        &format!(r#"{{"operation":"upload","objects":[{{"oid":"{OID}","size":5}}]}}"#),
    );
    assert_eq!(status, 403);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("https://lfs.example.com/P/r")),
        "{body}"
    );
    // Not a batch request, another transfer or hash only, too many objects: refused whole.
    assert_eq!(post(&node, batch, "{not json").0, 422);
    let tus = format!(
        r#"{{"operation":"download","transfers":["tus"],"objects":[{{"oid":"{OID}","size":5}}]}}"#
    );
    assert_eq!(post(&node, batch, &tus).0, 422);
    let sha512 = r#"{"operation":"download","hash_algo":"sha512","objects":[]}"#;
    assert_eq!(post(&node, batch, sha512).0, 422);
    let many: Vec<String> = (0..10_001)
        .map(|_| format!(r#"{{"oid":"{OID}","size":1}}"#))
        .collect();
    let many = format!(
        r#"{{"operation":"download","objects":[{}]}}"#,
        many.join(",")
    );
    assert_eq!(post(&node, batch, &many).0, 413);
    // A malformed object ID: that object's error, the request answered.
    let (status, body) = post(
        &node,
        batch,
        &format!(
            r#"{{"operation":"download","objects":[{{"oid":"{}","size":5}}]}}"#,
            OID.to_uppercase()
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(body["objects"][0]["error"]["code"], 422, "{body}");
    // A repository that is not mirrored; an object nobody holds.
    let (status, _) = post(
        &node,
        "/scm/P/nope.git/info/lfs/objects/batch",
        &format!(r#"{{"operation":"download","objects":[{{"oid":"{OID}","size":5}}]}}"#),
    );
    assert_eq!(status, 404);
    let r = reqwest::blocking::get(format!(
        "http://127.0.0.1:{}/scm/P/r.git/info/lfs/objects/{OID}",
        node.http
    ))
    .expect("GET");
    assert_eq!(r.status().as_u16(), 404);
    // A forged token opens nothing (and an anonymous node does not hold the object anyway).
    let r = reqwest::blocking::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/scm/P/r.git/info/lfs/objects/{OID}?size=5",
            node.http
        ))
        .header("x-mirrorfarm-lfs-token", "v1.99999999999.AAAA")
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 404);

    // Over SSH: the discovery document for downloads; uploads and git-lfs-transfer refused.
    let out = ssh(&node, "git-lfs-authenticate P/r.git download");
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("discovery JSON");
    assert_eq!(
        doc["href"],
        format!("http://127.0.0.1:{}/scm/P/r.git/info/lfs", node.http)
    );
    assert!(doc["expires_in"].as_i64().is_some_and(|s| s > 0), "{doc}");
    let out = ssh(&node, "git-lfs-authenticate P/r.git upload");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("https://lfs.example.com/P/r"),
        "{out:?}"
    );
    let out = ssh(&node, "git-lfs-transfer P/r.git download");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("git-lfs-authenticate"),
        "{out:?}"
    );
    let out = ssh(&node, "git-lfs-authenticate P/nope.git download");
    assert!(!out.status.success());

    // /metrics carries the LFS counters.
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", node.http))
        .expect("metrics")
        .text()
        .expect("text");
    let samples = prom::parse(&text);
    for (name, label) in [
        ("mirrorfarm_lfs_objects", None),
        ("mirrorfarm_lfs_bytes", None),
        ("mirrorfarm_lfs_prefetched_total", None),
        ("mirrorfarm_lfs_hits_total", Some(("source", "local"))),
        ("mirrorfarm_lfs_hits_total", Some(("source", "member"))),
        ("mirrorfarm_lfs_downloads_total", Some(("from", "upstream"))),
    ] {
        let found = samples.iter().find(|s| {
            s.name == name
                && label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v))
        });
        assert_eq!(
            found.map(|s| s.value),
            Some(0.0),
            "{name} {label:?}\n{text}"
        );
    }
    assert!(text.trim_end().ends_with("# EOF"), "one closing EOF");
}
