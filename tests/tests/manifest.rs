//! Listing a plain upstream from a grokmirror manifest (`plugin.mirroring.upstream.manifest.url`):
//! the manifest is written by grokmirror's real `grok-manifest` (gzip) and served by a real HTTP
//! server (`python3 -m http.server`, which answers `If-Modified-Since` with 304); the
//! repositories themselves are fetched from the upstream's `file://` directory.
//! Shows: only the selected project's repositories are served; reconciles go on (the manifest
//! answers 304) without syncing a repository whose fingerprint is the one it was last synced at,
//! also when the manifest changes for another repository; a repository whose fingerprint changed
//! is synced and serves the new commit; the listing is the manifest's (a repository created
//! upstream is mirrored only once the manifest names it, one removed from it stops being served).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_port, gitc, wait_for, wait_or_explain};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);
/// The manifest's file name (`.gz`: grok-manifest gzips it).
const MANIFEST: &str = "manifest.js.gz";

/// grokmirror's `grok-manifest`, in the venv `MIRRORFARM_GROKMIRROR_VENV` names (by default the
/// one tests/fixtures/grokmirror/README.md installs).
fn grok_manifest() -> PathBuf {
    let venv = std::env::var_os("MIRRORFARM_GROKMIRROR_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mirrorfarm-test/grokmirror"));
    let bin = venv.join("bin").join("grok-manifest");
    assert!(
        bin.exists(),
        "{} is missing: install grokmirror as tests/fixtures/grokmirror/README.md shows",
        bin.display()
    );
    bin
}

/// Runs `grok-manifest -m <manifest> -t <toplevel> <args>`; panics with its output if it fails.
fn grok(manifest: &Path, toplevel: &Path, args: &[&str]) {
    let out = Command::new(grok_manifest())
        .arg("-m")
        .arg(manifest)
        .arg("-t")
        .arg(toplevel)
        .args(args)
        // The git it runs ignores the machine's configuration, as the harness's git does.
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run grok-manifest");
    assert!(
        out.status.success(),
        "grok-manifest {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The manifest's entries: repository path (`/PROJ/a.git`) → fingerprint.
fn fingerprints(manifest: &Path) -> BTreeMap<String, String> {
    let file = std::fs::File::open(manifest).expect("open the manifest");
    let v: Value = serde_json::from_reader(flate2::read::GzDecoder::new(file))
        .expect("the manifest is gzipped JSON");
    v.as_object()
        .expect("the manifest is a JSON object")
        .iter()
        .map(|(path, entry)| {
            let fp = entry["fingerprint"]
                .as_str()
                .expect("every entry has a fingerprint");
            (path.clone(), fp.to_owned())
        })
        .collect()
}

/// The manifest file's modification time, in whole seconds (what `Last-Modified` carries).
fn mtime_secs(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("the manifest's mtime")
        .duration_since(UNIX_EPOCH)
        .expect("mtime after 1970")
        .as_secs()
}

/// Runs grok-manifest on a manifest the node has read already. HTTP dates have whole seconds:
/// a manifest rewritten within the second of the `Last-Modified` the node holds would be answered
/// 304 to its `If-Modified-Since` (grok-pull's behaviour too), so this first waits (bounded) for
/// the clock to be past that second, then checks the rewrite carries a later one.
fn update_manifest(manifest: &Path, toplevel: &Path, args: &[&str]) {
    let before = mtime_secs(manifest);
    wait_for(
        "the clock to pass the manifest's last second",
        Duration::from_secs(5),
        || {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970");
            // A margin for the file system's coarser clock.
            (now.saturating_sub(Duration::from_millis(100)).as_secs() > before).then_some(())
        },
    );
    grok(manifest, toplevel, args);
    let after = mtime_secs(manifest);
    assert!(
        after > before,
        "the rewritten manifest must have a later Last-Modified ({after} vs {before})"
    );
}

/// `python3 -m http.server` serving a directory on 127.0.0.1, its request log (stderr) kept in a
/// file; killed on drop.
struct HttpServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl HttpServer {
    /// Serves `dir`, logging to `log`; returns once the port answers.
    fn start(dir: &Path, log: PathBuf) -> Self {
        let port = free_port();
        let err = std::fs::File::create(&log).expect("create the server's log");
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start python3 -m http.server");
        let mut s = Self { child, port, log };
        wait_for(
            "the manifest's HTTP server to listen",
            Duration::from_secs(20),
            || {
                if let Ok(Some(st)) = s.child.try_wait() {
                    panic!(
                        "python3 -m http.server exited with {st}: {}",
                        std::fs::read_to_string(&s.log).unwrap_or_default()
                    );
                }
                TcpStream::connect(("127.0.0.1", port)).ok()
            },
        );
        s
    }

    /// Its request log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many GETs of the manifest it answered with `status`.
    fn manifest_gets(&self, status: u16) -> usize {
        let line = format!("\"GET /{MANIFEST} HTTP/1.1\" {status} ");
        self.log().lines().filter(|l| l.contains(&line)).count()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The commit `refs/heads/main` of a repository names on `node` (over HTTP).
fn main_of(node: &Node, project: &str, repo: &str) -> Option<String> {
    let url = node.http_url(project, repo);
    let out = gitc::try_run(None, &["ls-remote", &url, "refs/heads/main"], &[]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

/// The syncs of `repo` (`PROJECT/slug`) the node finished: it logs one line for each.
fn syncs(node: &Node, repo: &str) -> usize {
    let log = node.log();
    ["sync ok", "sync failed"]
        .iter()
        .map(|w| log.matches(&format!("{w} repo={repo} ")).count())
        .sum()
}

/// Where a repository's syncs stand: how many finished, the end of the last one on /status.
#[derive(Debug, PartialEq)]
struct Syncs {
    count: usize,
    last_sync: Value,
    running: bool,
}

/// The syncs of `PROJECT/slug` now.
fn syncs_of(node: &Node, repo: &str) -> Syncs {
    let (p, r) = repo.split_once('/').expect("PROJECT/slug");
    let st = node
        .repo_status(p, r)
        .unwrap_or_else(|| panic!("{repo} is not on /status"));
    Syncs {
        count: syncs(node, repo),
        last_sync: st["lastSync"].clone(),
        running: st["syncing"] != false,
    }
}

/// Waits until `repo` has finished a sync and none runs (its log line and /status agree).
fn settled(node: &Node, repo: &str) -> Syncs {
    wait_or_explain(
        &format!("{repo}'s syncs to be done"),
        LIMIT,
        || {
            let s = syncs_of(node, repo);
            (!s.running && s.count >= 1 && s.last_sync.is_string()).then_some(s)
        },
        || node.explain(40),
    )
}

/// `repo` was not synced since `before`: no new log line, the same end time, none running.
fn assert_not_synced_again(node: &Node, repo: &str, before: &Syncs, why: &str) {
    assert_eq!(
        &syncs_of(node, repo),
        before,
        "{repo} was synced again although {why}\n{}",
        node.explain(40)
    );
}

#[test]
fn a_grokmirror_manifest_lists_the_upstream_and_its_fingerprints_skip_unchanged_repositories() {
    let up = Upstream::new();
    for (p, r) in [("PROJ", "a"), ("PROJ", "b"), ("OTHER", "c")] {
        up.create(p, r, &Shape::small());
    }
    let top = up.root();
    let site = tempfile::tempdir().expect("the served directory");
    let logs = tempfile::tempdir().expect("a directory for the server's log");
    let manifest = site.path().join(MANIFEST);
    grok(&manifest, &top, &[]);
    let listed = fingerprints(&manifest);
    let paths: Vec<&str> = listed.keys().map(String::as_str).collect();
    assert_eq!(paths, ["/OTHER/c.git", "/PROJ/a.git", "/PROJ/b.git"]);

    let server = HttpServer::start(site.path(), logs.path().join("http.log"));
    let node = Node::start(
        &up.file_url(),
        &format!(
            "mirror.projects=PROJ\nmirror.access=anonymous\n\
             plugin.mirroring.upstream.manifest.url=http://127.0.0.1:{}/{MANIFEST}\n\
             plugin.mirroring.synchronization.interval=3\n",
            server.port
        ),
    );
    let explain = || {
        format!(
            "{}\nmanifest server's log:\n{}",
            node.explain(40),
            server.log()
        )
    };

    // The selected project's repositories, and only those, are served.
    wait_or_explain(
        "PROJ/a and PROJ/b synchronized",
        LIMIT,
        || {
            let s = node.status();
            (s["state"] == "SYNCHRONIZED" && s["totalRepos"] == 2 && s["syncedRepos"] == 2)
                .then_some(())
        },
        explain,
    );
    assert!(
        node.repo_status("OTHER", "c").is_none(),
        "OTHER is not selected"
    );
    assert_eq!(
        [
            node.info_refs_status("PROJ", "a"),
            node.info_refs_status("PROJ", "b"),
            node.info_refs_status("OTHER", "c")
        ],
        [200, 200, 404]
    );
    assert!(server.manifest_gets(200) >= 1, "{}", server.log());

    // Reconciles go on (every 3 s), each asking for the manifest with If-Modified-Since (304):
    // the fingerprints the repositories were synced at are unchanged, so neither is synced again
    // (without them, every reconcile syncs every listed repository).
    let a = settled(&node, "PROJ/a");
    let b = settled(&node, "PROJ/b");
    let seen = server.manifest_gets(304);
    wait_or_explain(
        "two more reconciles (the manifest answered 304)",
        LIMIT,
        || (server.manifest_gets(304) >= seen + 2).then_some(()),
        explain,
    );
    assert_not_synced_again(&node, "PROJ/a", &a, "its fingerprint is unchanged");
    assert_not_synced_again(&node, "PROJ/b", &b, "its fingerprint is unchanged");

    // A commit on PROJ/b, announced by grok-manifest's update of b alone: b is synced and serves
    // it, a (same fingerprint in the new manifest) is still not synced again.
    let pushed = up.commit("PROJ", "b", "main", "pushed upstream");
    let b_path = up.repo("PROJ", "b");
    let b_path = b_path.to_str().expect("UTF-8 path");
    update_manifest(&manifest, &top, &[b_path]);
    let relisted = fingerprints(&manifest);
    assert_ne!(
        relisted["/PROJ/b.git"], listed["/PROJ/b.git"],
        "b's fingerprint follows its refs"
    );
    assert_eq!(
        relisted["/PROJ/a.git"], listed["/PROJ/a.git"],
        "only b was re-examined"
    );
    wait_or_explain(
        "PROJ/b's new commit served",
        LIMIT,
        || (main_of(&node, "PROJ", "b").as_deref() == Some(pushed.as_str())).then_some(()),
        explain,
    );
    let b_again = settled(&node, "PROJ/b");
    assert!(b_again.count > b.count, "{b_again:?} after {b:?}");
    assert_not_synced_again(&node, "PROJ/a", &a, "the new manifest kept its fingerprint");

    // The listing is the manifest's: a repository created upstream is not mirrored until the
    // manifest names it (a listing of the directory would add it at the next reconcile).
    let d_path = up.create("PROJ", "d", &Shape::small());
    let seen = server.manifest_gets(304);
    wait_or_explain(
        "two reconciles after PROJ/d was created upstream",
        LIMIT,
        || (server.manifest_gets(304) >= seen + 2).then_some(()),
        explain,
    );
    assert!(
        node.repo_status("PROJ", "d").is_none(),
        "PROJ/d is not in the manifest yet\n{}",
        explain()
    );
    update_manifest(&manifest, &top, &[d_path.to_str().expect("UTF-8 path")]);
    wait_or_explain(
        "PROJ/d served once the manifest lists it",
        LIMIT,
        || (node.info_refs_status("PROJ", "d") == 200).then_some(()),
        explain,
    );

    // A repository deleted upstream and dropped from the manifest (`-x`) stops being served.
    std::fs::remove_dir_all(up.repo("PROJ", "b")).expect("delete PROJ/b upstream");
    update_manifest(&manifest, &top, &["-x", b_path]);
    assert!(!fingerprints(&manifest).contains_key("/PROJ/b.git"));
    wait_or_explain(
        "PROJ/b no longer served",
        LIMIT,
        || {
            (node.info_refs_status("PROJ", "b") == 404 && node.repo_status("PROJ", "b").is_none())
                .then_some(())
        },
        explain,
    );
    assert_eq!(node.info_refs_status("PROJ", "a"), 200);
    assert_eq!(node.status()["totalRepos"], 2, "PROJ/a and PROJ/d");
    assert_not_synced_again(&node, "PROJ/a", &a, "its fingerprint never changed");
}
