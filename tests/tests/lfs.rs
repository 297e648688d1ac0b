//! Git LFS through the farm, with the real git-lfs client and a real third-party LFS server
//! (giftless behind the upstream's nginx: HTTP Basic and the per-repository rules in front of the
//! batch API, JWT-signed object URLs behind it).

use std::path::Path;
use std::time::Duration;

use mirrorfarm_tests::farm::{following_lb_with, gossip_port, ssh_farm_on};
use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::lfs_client::{
    assert_checked_out, authorize_with_lfs, bytes, credentials, download_request, git, lfs_config,
    oid, push_lfs_files,
};
use mirrorfarm_tests::node::{Node, Placement};
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_port, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(40);
const ALICE: (&str, &str) = ("alice", "alice-pw");
const BOB: (&str, &str) = ("bob", "bob-pw");

fn env(ca: &Path) -> Vec<(&'static str, String)> {
    vec![("GIT_SSL_CAINFO", ca.display().to_string())]
}

fn envs<'a>(e: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    e.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn lfs_status(node: &Node) -> serde_json::Value {
    node.status()["lfs"].clone()
}

/// Clones `url` with LFS on into `dest`; `config` adds credentials or ssh settings.
fn clone_lfs(url: &str, dest: &Path, config: &[String], e: &[(&str, &str)]) {
    let mut cfg = lfs_config();
    cfg.extend_from_slice(config);
    let d = dest.to_str().expect("utf8 path");
    git(None, &cfg, &["clone", "-q", url, d], e);
}

#[test]
fn prefetch_lets_a_clone_succeed_while_the_upstream_lfs_server_is_down() {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.create("P", "other", &Shape::small());
    up.start_sshd();
    let (http, mut lfs) = HttpUpstream::start_with_lfs(
        &up.root(),
        &[ALICE],
        &[("P/r", &["alice"]), ("P/other", &["alice"])],
    );
    let e = env(&http.ca_file());
    let work = tempfile::tempdir().expect("tempdir");
    let node = Node::start(
        &up.ssh_url(),
        &format!(
            "mirror.repos=P/r,P/other\nmirror.access=authenticated\n{}",
            http.properties()
        ),
    );
    let s = node.wait_state("AWAITING_AUTHORIZATION", LIMIT);
    // The farm's key may run git-lfs-authenticate upstream, as on a forge.
    authorize_with_lfs(
        &up,
        s["publicKey"].as_str().expect("publicKey"),
        &lfs,
        work.path(),
    );
    assert_eq!(node.trigger(None), 202);
    node.wait_state("SYNCHRONIZED", LIMIT);

    let (a, b) = (bytes(1 << 20, 1), bytes(300_000, 2));
    let files: [(&str, &[u8]); 2] = [("a.lfs", &a), ("b.lfs", &b)];
    let creds = [credentials(ALICE.0, ALICE.1)];
    push_lfs_files(
        &format!("{}/P/r.git", http.url()),
        &work.path().join("pushed"),
        &files,
        &creds,
        &envs(&e),
    );
    let downloads = lfs.downloads();
    assert_eq!(node.trigger(Some(("P", "r"))), 202);
    wait_or_explain(
        "both objects prefetched",
        LIMIT,
        || {
            let s = lfs_status(&node);
            (s["prefetched"].as_u64() == Some(2) && s["downloading"].as_u64() == Some(0))
                .then_some(())
        },
        || format!("{}\n{}", lfs_status(&node), node.explain(40)),
    );
    assert_eq!(
        lfs.downloads(),
        downloads + 2,
        "each object downloaded once"
    );

    // The upstream's LFS server goes down; git is still up. The clone gets every object from
    // the node.
    // Held for P/r is not held for P/other: a reader of P/other (alice may read both) does not
    // get P/r's object unless the upstream offers it for P/other, which it does not.
    let other = format!("{}/info/lfs/objects", node.http_url("P", "other"));
    let answer: serde_json::Value = batch(
        &format!("{other}/batch"),
        Some(ALICE),
        &[(&oid(&a), a.len())],
    )
    .json()
    .expect("batch answer");
    assert_eq!(answer["objects"][0]["error"]["code"], 404, "{answer}");
    assert!(answer["objects"][0]["actions"].is_null(), "{answer}");
    let r = reqwest::blocking::Client::new()
        .get(format!("{other}/{}", oid(&a)))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 404);

    lfs.stop_lfs();
    let dest = work.path().join("clone");
    clone_lfs(&node.http_url("P", "r"), &dest, &creds, &envs(&e));
    assert_checked_out(&dest, &files);
    let s = lfs_status(&node);
    assert_eq!(s["hits"]["local"].as_u64(), Some(2), "{s}");
    assert_eq!(s["upstreamDownloads"].as_u64(), Some(2), "{s}");
    assert_eq!(s["objects"].as_u64(), Some(2), "{s}");
    lfs.start_lfs();
}

/// A raw batch request to `url` (a node's `/scm/P/r.git/info/lfs/objects/batch`).
fn batch(
    url: &str,
    who: Option<(&str, &str)>,
    objects: &[(&str, usize)],
) -> reqwest::blocking::Response {
    let mut r = reqwest::blocking::Client::new()
        .post(url)
        .header("Accept", "application/vnd.git-lfs+json")
        .header("Content-Type", "application/vnd.git-lfs+json")
        .timeout(Duration::from_secs(60))
        .body(download_request(objects).to_string());
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    r.send().expect("batch request")
}

/// The download action of the only object of a batch answer: the path it names on the farm
/// (the host is the LB's) and its token.
fn action(answer: &serde_json::Value) -> (String, String) {
    let a = &answer["objects"][0]["actions"]["download"];
    let href = a["href"]
        .as_str()
        .unwrap_or_else(|| panic!("no action: {answer}"));
    let path = href.splitn(4, '/').nth(3).expect("path");
    let token = a["header"]["x-mirrorfarm-lfs-token"]
        .as_str()
        .expect("token")
        .to_owned();
    (format!("/{path}"), token)
}

/// GET of an object path on `node` with `token`: status and body (`None` if it broke off).
fn get_object(node: &Node, path: &str, token: &str) -> (u16, Option<Vec<u8>>) {
    let r = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{}{path}", node.http))
        .header("x-mirrorfarm-lfs-token", token)
        .timeout(Duration::from_secs(60))
        .send()
        .expect("GET object");
    let status = r.status().as_u16();
    (status, r.bytes().ok().map(|b| b.to_vec()))
}

#[test]
fn the_farm_serves_lfs_over_https_and_ssh_downloading_each_object_once() {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let (http, lfs) = HttpUpstream::start_with_lfs(
        &up.root(),
        &[ALICE, BOB],
        &[("P/r", &["alice"]), ("P/other", &["bob"])],
    );
    let ca = env(&http.ca_file());
    let work = tempfile::tempdir().expect("tempdir");
    let objects: Vec<Vec<u8>> = (0..3).map(|i| bytes(400_000 << i, 10 + i as u64)).collect();
    let files: Vec<(String, &[u8])> = objects
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("f{i}.lfs"), b.as_slice()))
        .collect();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let alice = [credentials(ALICE.0, ALICE.1)];
    push_lfs_files(
        &format!("{}/P/r.git", http.url()),
        &work.path().join("seed"),
        &files,
        &alice,
        &envs(&ca),
    );

    // Three members behind the LB, authenticated, on-demand only (no prefetch).
    let lb_port = free_port();
    let extra = format!(
        "mirror.access=authenticated\n{}setup.baseUrl=https://localhost:{lb_port}\nmirror.lfs.prefetch=false\n",
        http.properties()
    );
    let nodes = ssh_farm_on(&up, 3, LIMIT, &extra, &Placement::default());
    let lb = following_lb_with(
        gossip_port(&nodes[0]),
        &format!("lb.https.port={lb_port}\n"),
    );
    lb.wait_healthy(3, LIMIT);
    let lb_env = lb.git_env();

    // No credentials: 401 with LFS-Authenticate; a user who may not read: 404.
    let url = |n: &Node| format!("{}/info/lfs/objects/batch", n.http_url("P", "r"));
    let (o0, s0) = (oid(&objects[0]), objects[0].len());
    let seeded = lfs.batches();
    let r = batch(&url(&nodes[0]), None, &[(&o0, s0)]);
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("lfs-authenticate").is_some(), "{r:?}");
    assert_eq!(
        batch(&url(&nodes[1]), Some(BOB), &[(&o0, s0)])
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        lfs.batches(),
        seeded,
        "refused before the upstream's LFS server was asked"
    );

    // 20 clones at once through the LB: every file byte-identical, each object downloaded from
    // the upstream once for the whole farm.
    let clones: Vec<_> = (0..20).map(|i| work.path().join(format!("c{i}"))).collect();
    std::thread::scope(|s| {
        for dest in &clones {
            let (lb, alice, lb_env) = (&lb, &alice, &lb_env);
            s.spawn(move || clone_lfs(&lb.https_url("P", "r"), dest, alice, &envs(lb_env)));
        }
    });
    for dest in &clones {
        assert_checked_out(dest, &files);
    }
    assert_eq!(lfs.downloads(), 3, "one upstream download per object");
    let up_downloads: u64 = nodes
        .iter()
        .map(|n| lfs_status(n)["upstreamDownloads"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(up_downloads, 3);

    // Over SSH: git-lfs asks git-lfs-authenticate through the LB and downloads over HTTPS with
    // the access token it hands out.
    let key = nodes[0].client_key().to_owned();
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    for n in &nodes {
        std::fs::write(
            n.home().join("authorized_keys"),
            format!("user=\"alice\",repos=\"P/*\" {public}"),
        )
        .expect("authorized_keys");
    }
    let dest = work.path().join("over-ssh");
    let ssh_cmd = nodes[0].git_ssh();
    let mut ssh_env = envs(&lb_env);
    ssh_env.push(("GIT_SSH_COMMAND", &ssh_cmd));
    clone_lfs(&lb.ssh_url("P", "r"), &dest, &[], &ssh_env);
    assert_checked_out(&dest, &files);

    // An object one member fetched from the upstream is served by another without the upstream:
    // the member that asks neither downloaded it nor was asked for it before takes it from a member.
    let fresh = bytes(200_000, 99);
    let fresh_oid = lfs.put_object("P", "r", &fresh);
    let from_upstream = |n: &Node| lfs_status(n)["upstreamDownloads"].as_u64().unwrap_or(0);
    let before: Vec<u64> = nodes.iter().map(from_upstream).collect();
    let answer: serde_json::Value =
        batch(&url(&nodes[0]), Some(ALICE), &[(&fresh_oid, fresh.len())])
            .json()
            .expect("batch answer");
    let (path, token) = action(&answer);
    assert_eq!(
        get_object(&nodes[0], &path, &token),
        (200, Some(fresh.clone()))
    );
    let fetcher = (0..3)
        .find(|&i| from_upstream(&nodes[i]) == before[i] + 1)
        .expect("one member downloaded it from the upstream");
    let second = (0..3)
        .find(|&i| i != 0 && i != fetcher)
        .expect("a member that has not seen it");
    let (downloads, batches) = (lfs.downloads(), lfs.batches());
    let took = |n: &Node| {
        let s = lfs_status(n);
        (
            s["memberDownloads"].as_u64().unwrap_or(0),
            s["hits"]["member"].as_u64().unwrap_or(0),
        )
    };
    let (member_downloads, member_hits) = took(&nodes[second]);
    let answer: serde_json::Value = batch(
        &url(&nodes[second]),
        Some(ALICE),
        &[(&fresh_oid, fresh.len())],
    )
    .json()
    .expect("batch answer");
    let (path, token) = action(&answer);
    assert_eq!(
        get_object(&nodes[second], &path, &token),
        (200, Some(fresh.clone()))
    );
    assert_eq!(
        (lfs.downloads(), lfs.batches()),
        (downloads, batches),
        "the upstream was not asked"
    );
    assert_eq!(
        took(&nodes[second]),
        (member_downloads + 1, member_hits + 1),
        "{}",
        lfs_status(&nodes[second])
    );
    // A token opens its own object only.
    assert_eq!(
        get_object(&nodes[1], &path.replace(&fresh_oid, &o0), &token).0,
        401
    );

    // An object whose bytes upstream are not what its ID says: refused, and no member keeps it.
    let good = bytes(150_000, 7);
    let bad_oid = lfs.put_object("P", "r", &good);
    std::fs::write(lfs.object_path(&bad_oid), bytes(150_000, 8)).expect("corrupt");
    let answer: serde_json::Value = batch(&url(&nodes[2]), Some(ALICE), &[(&bad_oid, good.len())])
        .json()
        .expect("batch answer");
    let (path, token) = action(&answer);
    let (status, body) = get_object(&nodes[2], &path, &token);
    assert!(
        status != 200 || body.as_ref().is_none_or(|b| b.len() < good.len()),
        "served the corrupt object whole: {status}"
    );
    for n in &nodes {
        let kept = n
            .home()
            .join("lfs/objects")
            .join(&bad_oid[..2])
            .join(&bad_oid[2..4])
            .join(&bad_oid);
        assert!(!kept.exists(), "{} kept a corrupt object", kept.display());
    }

    // An LFS push through the farm lands upstream (objects through the upstream's LFS server,
    // the commit through the farm's push path).
    let pushed = bytes(250_000, 42);
    let uploads = lfs.uploads();
    // git-lfs sends the objects where the upstream's answer says (its own server): it needs
    // the LB's CA and the upstream's.
    let bundle = work.path().join("cas.pem");
    let pems = [lb.ca(), http.ca_file()].map(|p| std::fs::read_to_string(p).expect("CA"));
    std::fs::write(&bundle, pems.concat()).expect("CA bundle");
    push_lfs_files(
        &lb.https_url("P", "r"),
        &clones[0],
        &[("pushed.lfs", &pushed)],
        &alice,
        &envs(&env(&bundle)),
    );
    assert_eq!(lfs.uploads(), uploads + 1);
    assert_eq!(
        std::fs::read(lfs.object_path_in("P", "r", &oid(&pushed))).expect("uploaded upstream"),
        pushed
    );
}
