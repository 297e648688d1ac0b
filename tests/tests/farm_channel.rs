//! The farm channel (HTTPS with mutual TLS on each member's gossip port): only the join route is
//! open to a client without a farm certificate; describing a member needs one from the farm CA,
//! and syncs, words about staged states and git objects a node's (a load balancer's is not
//! enough; a malformed word is refused); a certificate of another CA does not get through TLS; a
//! join whose proof is not ASCII is refused and harms nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mirrorfarm_common::farm::tls::{ca_roots, cert_and_key, lb_name, node_name};
use mirrorfarm_node::farm::trust::FarmCa;
use mirrorfarm_tests::farm::file_farm;
use mirrorfarm_tests::gitc;

const LIMIT: Duration = Duration::from_secs(90);

/// A client trusting the farm CA `ca_pem`, presenting `identity` (PEM certificate and key) if any,
/// reaching `name` at `addr`.
fn client(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    name: &str,
    addr: SocketAddr,
) -> reqwest::blocking::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca_roots(ca_pem).expect("roots"));
    let mut tls = match identity {
        Some((cert, key)) => {
            let (certs, key) = cert_and_key(cert, key).expect("identity");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve(name, addr)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn farm_routes_need_a_farm_certificate() {
    let (_up, nodes, p0) = file_farm(2, LIMIT);
    let (a, b) = (&nodes[0], &nodes[1]);
    let a_id = a.status()["nodeId"].as_str().expect("nodeId").to_owned();
    let b_id = b.status()["nodeId"].as_str().expect("nodeId").to_owned();
    let farm_id = a.status()["farmId"].as_str().expect("farmId").to_owned();
    let ca_pem = read(&a.home().join("farm/ca.pem"));
    let name = node_name(&a_id);
    let addr = SocketAddr::from(([127, 0, 0, 1], p0));
    let base = format!("https://{name}:{p0}");
    let describe = format!("{base}/farm/describe");
    let info_refs = format!("{base}/farm/git/P/r.git/info/refs?service=git-upload-pack");
    let sync = format!("{base}/farm/sync");
    let nudge = serde_json::json!({"project": "P", "repo": "r"});
    let staged = format!("{base}/farm/staged");
    let word = |project: &str, hash: &str, head: &str| serde_json::json!({"project": project, "repo": "r", "refsHash": hash, "head": head, "stagedAtUs": 1});
    let good = word("P", &"ab".repeat(32), "refs/heads/main");

    // No client certificate: every route but join is refused.
    let anonymous = client(&ca_pem, None, &name, addr);
    let get = |c: &reqwest::blocking::Client, url: &str| {
        c.get(url).send().expect("request").status().as_u16()
    };
    assert_eq!(get(&anonymous, &describe), 403);
    assert_eq!(get(&anonymous, &info_refs), 403);
    let posted = anonymous.post(&sync).json(&nudge).send().expect("sync");
    assert_eq!(posted.status().as_u16(), 403);
    let posted = anonymous.post(&staged).json(&good).send().expect("staged");
    assert_eq!(posted.status().as_u16(), 403);

    // Joins whose proof or nonce is not ASCII are refused, and the member carries on.
    for (nonce, proof) in [
        ("ab".repeat(32), "aéb".to_owned()),
        ("é".repeat(32), "00".repeat(32)),
    ] {
        let join = serde_json::json!({"nodeId": "x", "nonce": nonce, "proof": proof, "config": {}});
        let r = anonymous
            .post(format!("{base}/farm/join"))
            .json(&join)
            .send()
            .expect("join answered");
        assert_eq!(r.status().as_u16(), 403);
        let body: serde_json::Value = r.json().expect("join answer");
        assert_eq!(body["refused"], "wrong farm secret", "{body}");
        assert!(body.get("caKey").is_none_or(|v| v.is_null()), "{body}");
    }

    // A member node's certificate: describe, sync and objects (its staged state included).
    let (b_cert, b_key) = (
        read(&b.home().join("farm/node.pem")),
        read(&b.home().join("farm/node.key")),
    );
    let member = client(&ca_pem, Some((&b_cert, &b_key)), &name, addr);
    let d: serde_json::Value = member
        .get(&describe)
        .send()
        .expect("describe")
        .json()
        .expect("json");
    assert_eq!(d["nodeId"], a_id.as_str());
    assert_eq!(d["http"], format!("127.0.0.1:{}", a.http).as_str());
    assert_eq!(get(&member, &info_refs), 200);
    assert_eq!(
        member
            .post(&sync)
            .json(&nudge)
            .send()
            .expect("sync")
            .status()
            .as_u16(),
        202
    );
    // … and its word about a staged state; a malformed word or one about a repository this
    // member does not mirror is refused.
    let post = |c: &reqwest::blocking::Client, body: &serde_json::Value| {
        c.post(&staged)
            .json(body)
            .send()
            .expect("staged")
            .status()
            .as_u16()
    };
    assert_eq!(post(&member, &good), 202);
    assert_eq!(
        post(&member, &word("P", &"AB".repeat(32), "refs/heads/main")),
        400
    );
    assert_eq!(post(&member, &word("P", "abc", "refs/heads/main")), 400);
    assert_eq!(
        post(&member, &word("P", &"ab".repeat(32), "refs/tags/v1")),
        400
    );
    assert_eq!(
        post(&member, &word("Q", &"ab".repeat(32), "refs/heads/main")),
        404
    );

    // git's own client: without a certificate it is refused, with the member's it lists the refs.
    let resolve = format!("http.curloptResolve={name}:{p0}:127.0.0.1");
    let ca_file = a.home().join("farm/ca.pem");
    let ca_opt = format!("http.sslCAInfo={}", ca_file.display());
    let url = format!("{base}/farm/git/P/r.git");
    let out = gitc::try_run(
        None,
        &["-c", &resolve, "-c", &ca_opt, "ls-remote", &url],
        &[],
    );
    assert!(
        !out.status.success(),
        "ls-remote without a certificate worked"
    );
    let cert_opt = format!("http.sslCert={}", b.home().join("farm/node.pem").display());
    let key_opt = format!("http.sslKey={}", b.home().join("farm/node.key").display());
    let out = gitc::try_run(
        None,
        &[
            "-c",
            &resolve,
            "-c",
            &ca_opt,
            "-c",
            &cert_opt,
            "-c",
            &key_opt,
            "ls-remote",
            &url,
        ],
        &[],
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listed.contains("refs/heads/main"), "{listed}");
    assert!(
        listed.contains("refs/mirrorfarm/staging/heads/main"),
        "the staged state is offered: {listed}"
    );

    // A load balancer's certificate from the farm CA: describe yes, objects, syncs and words no.
    let ca = FarmCa::load(a.home(), &farm_id)
        .expect("load")
        .expect("farm CA in the home");
    let (lb_cert, lb_key) = ca
        .issue_named("lb-test", &lb_name("lb-test"))
        .expect("issue");
    let lb = client(&ca_pem, Some((&lb_cert, &lb_key)), &name, addr);
    assert_eq!(get(&lb, &describe), 200);
    assert_eq!(get(&lb, &info_refs), 403);
    assert_eq!(
        lb.post(&sync)
            .json(&nudge)
            .send()
            .expect("sync")
            .status()
            .as_u16(),
        403
    );
    assert_eq!(post(&lb, &good), 403);

    // A certificate from another CA, even naming a member: refused in the TLS handshake.
    let stranger = FarmCa::create("another-farm").expect("ca");
    let (s_cert, s_key) = stranger.issue(&b_id).expect("issue");
    let s = client(&ca_pem, Some((&s_cert, &s_key)), &name, addr);
    assert!(
        s.get(&describe).send().is_err(),
        "a stranger's certificate was accepted"
    );

    // The member is still well.
    assert_eq!(a.status()["state"], "SYNCHRONIZED");
    assert_eq!(get(&member, &describe), 200);
}
