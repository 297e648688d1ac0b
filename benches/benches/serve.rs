//! Serving benchmark (issue "serve faster than git itself"): the node against nginx + fcgiwrap +
//! `git http-backend` (Debian packages) serving the same bare repository (the node's mirror, with
//! the same bitmaps), in one run, on a generated repository with ≥ 5000 refs (branches and
//! annotated tags) and a ≥ 50 MB pack:
//! - `info/refs` (v0) and v2 `ls-refs` requests/s with wrk (32 connections);
//! - no-op `git fetch` latency (median of 15);
//! - 8 clients cloning at once, and 20 one after the other: server CPU seconds per clone and wall
//!   time.
//!
//! Run: `scripts/bench serve`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_port, gitc, wait_for};

struct Killed(Vec<Child>);
impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A cpuacct cgroup that accounts the CPU of the processes put in it and of all their children
/// (reaped or not); `None` where the machine has no writable cgroup v1 cpuacct hierarchy.
struct CpuGroup(std::path::PathBuf);

impl CpuGroup {
    fn new(name: &str) -> Option<Self> {
        let dir = std::path::PathBuf::from("/sys/fs/cgroup/cpuacct")
            .join(format!("mirrorfarm-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        dir.join("cpuacct.usage").exists().then_some(Self(dir))
    }
    fn add(&self, pid: u32) {
        let _ = std::fs::write(self.0.join("cgroup.procs"), pid.to_string());
    }
    fn seconds(&self) -> f64 {
        std::fs::read_to_string(self.0.join("cpuacct.usage"))
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|ns| ns / 1e9)
            .unwrap_or(f64::NAN)
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // Move anything left back to the root group, then remove ours.
        if let Ok(pids) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for p in pids.lines() {
                let _ = std::fs::write("/sys/fs/cgroup/cpuacct/cgroup.procs", p);
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn pids_of(name: &str) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-x", name])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn baseline(dir: &Path, repos: &Path, port: u16) -> Killed {
    let sock = dir.join("fcgiwrap.sock");
    let backend = mirrorfarm_tests::http_upstream::git_http_backend();
    let fcgi = mirrorfarm_tests::http_upstream::fcgiwrap(&sock, 8);
    let conf = format!(
        "user root;\nworker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  fastcgi_temp_path {d}/fcgi;\n  proxy_temp_path {d}/proxy;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port};\n    location ~ ^/scm(/.*)$ {{\n      client_max_body_size 0;\n      fastcgi_buffering off;\n\
         include /etc/nginx/fastcgi_params;\n      fastcgi_param SCRIPT_FILENAME {backend};\n      fastcgi_param GIT_PROJECT_ROOT {repos};\n\
         fastcgi_param GIT_HTTP_EXPORT_ALL \"\";\n      fastcgi_param PATH_INFO $1;\n      fastcgi_param GIT_PROTOCOL $http_git_protocol;\n\
         fastcgi_pass unix:{sock};\n    }}\n  }}\n}}\n",
        d = dir.display(),
        repos = repos.display(),
        sock = sock.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let nginx = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx-light)");
    wait_for("nginx to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    Killed(vec![nginx, fcgi])
}

fn wrk(url: &str, script: Option<&Path>) -> f64 {
    let mut c = Command::new("wrk");
    c.args(["-t2", "-c32", "-d8s"]);
    if let Some(s) = script {
        c.arg("-s").arg(s);
    }
    let out = c.arg(url).output().expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(l) = text.lines().find(|l| l.contains("Non-2xx")) {
        eprintln!("  wrk {url}: {}", l.trim());
    }
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn noop_fetch(url: &str, dir: &Path) -> f64 {
    let clone = dir.join("noop");
    let _ = std::fs::remove_dir_all(&clone);
    gitc::run(
        None,
        &["clone", "-q", "--bare", url, clone.to_str().expect("utf8")],
        &[],
    );
    let times = (0..15)
        .map(|_| {
            let t = Instant::now();
            gitc::run(Some(&clone), &["fetch", "-q", url, "+refs/*:refs/*"], &[]);
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

/// The server's share of a no-op fetch: median wall time of the two requests git makes (v2 ref
/// advertisement, then `ls-refs` with the arguments git sends), on a new connection each round as
/// each git process opens one.
fn server_share(url: &str) -> f64 {
    let body =
        "0014command=ls-refs\n00010009peel\n000csymrefs\n000bunborn\n0015ref-prefix refs/\n0000";
    let times = (0..15)
        .map(|_| {
            let c = reqwest::blocking::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let t = Instant::now();
            let a = c
                .get(format!("{url}/info/refs?service=git-upload-pack"))
                .header("Git-Protocol", "version=2")
                .send()
                .and_then(|r| r.bytes())
                .expect("info/refs");
            let b = c
                .post(format!("{url}/git-upload-pack"))
                .header("Git-Protocol", "version=2")
                .header("Content-Type", "application/x-git-upload-pack-request")
                .body(body)
                .send()
                .and_then(|r| r.bytes())
                .expect("ls-refs");
            assert!(
                !a.is_empty() && b.len() > 1000,
                "ls-refs answered {} bytes",
                b.len()
            );
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

/// (server CPU seconds per clone, wall seconds) for `n` clones, `parallel` at a time.
fn clones(url: &str, dir: &Path, n: usize, parallel: bool, group: &CpuGroup) -> (f64, f64) {
    let cpu0 = group.seconds();
    let t = Instant::now();
    let run = |i: usize| {
        let dest = dir.join(format!("c-{i}"));
        gitc::run(
            None,
            &["clone", "-q", "--bare", url, dest.to_str().expect("utf8")],
            &[],
        );
        dest
    };
    let dests: Vec<_> = if parallel {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..n).map(|i| s.spawn(move || run(i))).collect();
            hs.into_iter()
                .map(|h| h.join().expect("clone thread"))
                .collect()
        })
    } else {
        (0..n).map(run).collect()
    };
    let wall = t.elapsed().as_secs_f64();
    // Give the server a moment to reap its git processes, so their CPU is counted.
    std::thread::sleep(Duration::from_millis(500));
    let cpu = group.seconds() - cpu0;
    for d in dests {
        let _ = std::fs::remove_dir_all(d);
    }
    (cpu / n as f64, wall)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("serve: benchmark");
        return;
    }
    let up = Upstream::new();
    let src = up.create(
        "BENCH",
        "big",
        &Shape {
            commits: 64,
            blob_bytes: 1 << 20,
            branches: 3500,
            tags: 1600,
        },
    );
    gitc::run(Some(&src), &["repack", "-adq"], &[]);
    let node = Node::start(
        &up.file_url(),
        "mirror.repos=BENCH/big\nmirror.access=anonymous\n",
    );
    node.wait_state("SYNCHRONIZED", Duration::from_secs(600));
    let mirror = node.mirror_path("BENCH", "big");
    let refs = gitc::refs(&mirror).len();
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _base = baseline(tmp.path(), &node.home().join("repos"), port);
    let node_base = node.http_url("BENCH", "big");
    let their_base = format!("http://127.0.0.1:{port}/scm/BENCH/big.git");

    let lua = tmp.path().join("ls-refs.lua");
    std::fs::write(
        &lua,
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/x-git-upload-pack-request\"\n\
         wrk.headers[\"Git-Protocol\"] = \"version=2\"\nwrk.body = \"0014command=ls-refs\\n0001000csymrefs\\n0009peel\\n0000\"\n",
    )
    .expect("lua");
    let q = "/info/refs?service=git-upload-pack";
    let v0 = (
        wrk(&format!("{node_base}{q}"), None),
        wrk(&format!("{their_base}{q}"), None),
    );
    let v2 = (
        wrk(&format!("{node_base}/git-upload-pack"), Some(&lua)),
        wrk(&format!("{their_base}/git-upload-pack"), Some(&lua)),
    );
    let noop = (
        noop_fetch(&node_base, tmp.path()),
        noop_fetch(&their_base, tmp.path()),
    );
    let share = (server_share(&node_base), server_share(&their_base));

    let (Some(ours), Some(theirs)) = (CpuGroup::new("node"), CpuGroup::new("baseline")) else {
        panic!("this benchmark needs a writable cgroup v1 cpuacct hierarchy to measure server CPU (run as root)");
    };
    ours.add(node.pid().expect("node pid"));
    for p in pids_of("nginx").into_iter().chain(pids_of("fcgiwrap")) {
        theirs.add(p);
    }
    let par = (
        clones(&node_base, tmp.path(), 8, true, &ours),
        clones(&their_base, tmp.path(), 8, true, &theirs),
    );
    let seq = (
        clones(&node_base, tmp.path(), 20, false, &ours),
        clones(&their_base, tmp.path(), 20, false, &theirs),
    );

    let metrics = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/metrics", node.http)])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let cache_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mirrorfarm_pack_cache_requests_total"))
        .collect();
    let pack_mb: f64 = std::fs::read_dir(mirror.join("objects/pack"))
        .expect("pack dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len() as f64 / 1e6)
        .sum();
    println!("\nnode vs nginx + fcgiwrap + git http-backend, {refs} refs, {pack_mb:.0} MB of packs, one run");
    println!("  node pack cache: {}", cache_lines.join(", "));
    println!(
        "  info/refs v0 req/s          node {:>9.0}  baseline {:>9.0}  ratio {:>6.2} (target ≥ 10)",
        v0.0,
        v0.1,
        v0.0 / v0.1
    );
    println!(
        "  v2 ls-refs req/s            node {:>9.0}  baseline {:>9.0}  ratio {:>6.2} (target ≥ 10)",
        v2.0,
        v2.1,
        v2.0 / v2.1
    );
    println!("  no-op fetch s (median)      node {:>9.3}  baseline {:>9.3}  ratio {:>6.2} (target ≤ 0.5)", noop.0, noop.1, noop.0 / noop.1);
    // What git does besides waiting for the server (spawning its helpers, matching 5100 refs,
    // checking them connected, writing FETCH_HEAD): no server can take it off.
    let client = noop.0 - share.0;
    println!(
        "    the server's share (its 2 requests) node {:>6.4}  baseline {:>6.4}; git's own work {client:.3} s → \
         a server answering in no time would reach {:.2}",
        share.0,
        share.1,
        client / noop.1
    );
    println!("  8 parallel: CPU s/clone     node {:>9.3}  baseline {:>9.3}  ratio {:>6.2} (target ≤ 0.25)", par.0 .0, par.1 .0, par.0 .0 / par.1 .0);
    println!(
        "  8 parallel: wall s          node {:>9.2}  baseline {:>9.2}  ratio {:>6.2} (target ≤ 1)",
        par.0 .1,
        par.1 .1,
        par.0 .1 / par.1 .1
    );
    println!("  20 sequential: CPU s/clone  node {:>9.3}  baseline {:>9.3}  ratio {:>6.2} (target ≤ 0.25)", seq.0 .0, seq.1 .0, seq.0 .0 / seq.1 .0);
    println!(
        "  20 sequential: wall s       node {:>9.2}  baseline {:>9.2}  ratio {:>6.2} (target ≤ 1)",
        seq.0 .1,
        seq.1 .1,
        seq.0 .1 / seq.1 .1
    );
}
