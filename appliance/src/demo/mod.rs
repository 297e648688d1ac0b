//! `mirrorfarm demo`: a whole farm on this machine. A generated upstream, three nodes forming one
//! farm (one `farm.secret`: one farm ID, one upstream key, one upstream fetch per change) and the
//! load balancer finding them by gossip run as child processes of this one (the real `mirrorfarm
//! node` and `mirrorfarm lb`); when every node is synchronized, in the farm and in rotation, the
//! clone commands are printed. Ctrl-C stops everything; a second run reuses the work directory
//! (the farm secret, identities, mirrors, certificate).

mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::probe;

const NODES: usize = 3;

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A port free for both TCP and UDP (gossip is UDP, the farm channel TCP, on one port).
fn free_gossip_port() -> Result<u16, String> {
    for _ in 0..50 {
        let p = free_port()?;
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    Err("no port free for both TCP and UDP".into())
}

struct Layout {
    work: PathBuf,
    https_port: u16,
    ssh_port: u16,
    admin_port: u16,
    nodes: Vec<(PathBuf, u16, u16)>,
}

/// The demo farm's secret: made once per work directory and kept there (0600).
fn farm_secret(work: &Path) -> Result<String, String> {
    let path = work.join("farm.secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if s.trim().len() >= 16 {
            return Ok(s.trim().to_owned());
        }
    }
    let mut raw = [0u8; 24];
    getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    write(&path, &format!("{secret}\n"))?;
    Ok(secret)
}

/// Writes a configuration file readable by its owner only (it holds the farm secret).
fn write(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    // A file left by an earlier run keeps its mode: tighten it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

fn prepare(work: &Path, https_port: u16, ssh_port: u16) -> Result<Layout, String> {
    let up = work.join("upstream");
    upstream::ensure(&up)?;
    let secret = farm_secret(work)?;
    let gossip: Vec<u16> = (0..NODES)
        .map(|_| free_gossip_port())
        .collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    for i in 1..=NODES {
        let home = work.join(format!("node{i}"));
        let (http, ssh) = (free_port()?, free_port()?);
        // Node 1 starts the farm; the others join through it.
        let seeds = if i == 1 {
            String::new()
        } else {
            format!("farm.seeds=127.0.0.1:{}\n", gossip[0])
        };
        let props = format!(
            "# Written by `mirrorfarm demo` (ports are chosen afresh at each run).\n\
             application.mode=mirror\nsetup.displayName=mirrorfarm demo node {i}\n\
             setup.baseUrl=https://localhost:{https_port}\nplugin.mirroring.upstream.url=file://{up}\n\
             plugin.mirroring.synchronization.interval=30\nmirror.projects=*\nmirror.access=anonymous\n\
             server.address=127.0.0.1\nserver.port={http}\nplugin.ssh.address=127.0.0.1\nplugin.ssh.port={ssh}\n\
             plugin.ssh.proxyProtocol=true\n\
             farm.secret={secret}\nfarm.gossip.address=127.0.0.1\nfarm.gossip.port={g}\n{seeds}",
            up = up.display(),
            g = gossip[i - 1],
        );
        write(&home.join(mirrorfarm_node::config::FILE_NAME), &props)?;
        nodes.push((home, http, ssh));
    }
    let admin_port = free_port()?;
    let seeds: Vec<String> = gossip.iter().map(|g| format!("127.0.0.1:{g}")).collect();
    // No backend list: the LB finds the members by gossip (and learns its own gossip address).
    let lb = format!(
        "# Written by `mirrorfarm demo`.\nlb.hostname=localhost\nlb.https.address=127.0.0.1\nlb.https.port={https_port}\n\
         lb.ssh.address=127.0.0.1\nlb.ssh.port={ssh_port}\nlb.ssh.proxyProtocol=true\nlb.admin.port={admin_port}\n\
         lb.health.interval=500\nlb.drain.grace=5\nlb.threads=2\n\
         lb.farm.seeds={}\nlb.farm.secret={secret}\nlb.farm.gossip.port={}\n",
        seeds.join(","),
        free_gossip_port()?,
    );
    write(&work.join("lb").join(mirrorfarm_lb::config::FILE_NAME), &lb)?;
    Ok(Layout {
        work: work.to_owned(),
        https_port,
        ssh_port,
        admin_port,
        nodes,
    })
}

fn spawn(args: &[&str], home: &Path) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let logs = home.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("process.log"))
        .map_err(|e| format!("{}: {e}", logs.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    Command::new(exe)
        .args(args)
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start mirrorfarm {}: {e}", args.join(" ")))
}

/// Every node synchronized and in one farm of all of them, and all in the LB's rotation; the
/// farm ID when so.
fn farm_ready(l: &Layout, http: &probe::Client) -> Option<String> {
    let mut farm_ids = std::collections::BTreeSet::new();
    for (_, port, _) in &l.nodes {
        let s = http.status(SocketAddr::from(([127, 0, 0, 1], *port)))?;
        if s.state != "SYNCHRONIZED" || s.member_count != NODES {
            return None;
        }
        farm_ids.insert(s.farm_id);
    }
    let lb = http.json(SocketAddr::from(([127, 0, 0, 1], l.admin_port)), "/status")?;
    let lb_ok = lb["healthyBackends"].as_u64() == Some(NODES as u64);
    (lb_ok && farm_ids.len() == 1).then(|| farm_ids.pop_first())?
}

fn banner(l: &Layout, farm_id: &str) -> String {
    let ca = l.work.join("lb").join("tls").join("cert.pem");
    let up = l.work.join("upstream");
    let first = l.nodes.first().map(|(_, h, _)| *h).unwrap_or_default();
    format!(
        "\nmirrorfarm demo is ready: a farm of {NODES} nodes (farm {farm_id}) behind the load balancer,\n\
         which found them by gossip. Each change is fetched from the upstream once, by its leader;\n\
         the others take it from the leader, and all of them advertise it together.\n\n\
         Clone over HTTPS (certificate verified):\n\
         \x20 GIT_SSL_CAINFO={ca} git clone https://localhost:{https}/scm/PLAT/kernel.git\n\
         Clone over SSH:\n\
         \x20 git clone ssh://git@localhost:{ssh}/PLAT/kernel.git\n\
         Status:\n\
         \x20 curl --cacert {ca} https://localhost:{https}/status      (a node, through the load balancer)\n\
         \x20 curl http://127.0.0.1:{admin}/status                      (the load balancer and its nodes)\n\n\
         Push a change to the demo upstream and watch it arrive:\n\
         \x20 git clone {up}/WEB/site.git /tmp/site && cd /tmp/site\n\
         \x20 git commit --allow-empty -m hello && git push origin HEAD:main\n\
         \x20 curl -s -X POST -H 'Content-Type: application/json' -d '{{\"project\":\"WEB\",\"repo\":\"site\"}}' \\\n\
         \x20      http://127.0.0.1:{first}/rest/mirroring/latest/sync     (one trigger, to any node)\n\
         \x20 for p in {ports}; do curl -s http://127.0.0.1:$p/status | grep -o '\"refsHash\":\"[0-9a-f]*\"' | head -1; done\n\
         \x20 GIT_SSL_CAINFO={ca} git ls-remote https://localhost:{https}/scm/WEB/site.git main\n\
         (every node follows that one trigger; they also pick changes up by themselves within 30 s)\n\n\
         Logs: {work}/*/logs/. Ctrl-C stops the demo; running it again reuses {work}.\n",
        ca = ca.display(),
        https = l.https_port,
        ssh = l.ssh_port,
        admin = l.admin_port,
        up = up.display(),
        ports = l.nodes.iter().map(|(_, h, _)| h.to_string()).collect::<Vec<_>>().join(" "),
        work = l.work.display(),
    )
}

fn stop_all(children: &mut [(String, Child)]) {
    for (_, c) in children.iter() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, c) in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("mirrorfarm demo: {name} did not stop in time; killing it");
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Sets `stop` on SIGINT (Ctrl-C) or SIGTERM, from a small thread of its own.
fn watch_signals(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("mirrorfarm demo: cannot watch signals ({e}); stop it with kill");
                return;
            }
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                },
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        });
        stop.store(true, Ordering::Release);
    });
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub fn run(workdir: PathBuf, https_port: u16, ssh_port: u16) -> ExitCode {
    let work = std::path::absolute(&workdir).unwrap_or(workdir);
    eprintln!("mirrorfarm demo: preparing {} …", work.display());
    let layout = match prepare(&work, https_port, ssh_port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mirrorfarm demo: {e}");
            return ExitCode::from(70);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    let mut children: Vec<(String, Child)> = Vec::new();
    for (i, (home, _, _)) in layout.nodes.iter().enumerate() {
        match spawn(&["node"], home) {
            Ok(c) => children.push((format!("node{}", i + 1), c)),
            Err(e) => {
                eprintln!("mirrorfarm demo: {e}");
                stop_all(&mut children);
                return ExitCode::from(70);
            }
        }
    }
    match spawn(&["lb"], &work.join("lb")) {
        Ok(c) => children.push(("load balancer".into(), c)),
        Err(e) => {
            eprintln!("mirrorfarm demo: {e}");
            stop_all(&mut children);
            return ExitCode::from(70);
        }
    }
    let started = Instant::now();
    let mut announced = false;
    let http = probe::Client::new();
    let code = loop {
        if stop.load(Ordering::Acquire) {
            eprintln!("\nmirrorfarm demo: stopping …");
            break ExitCode::SUCCESS;
        }
        if let Some((name, st)) = children
            .iter_mut()
            .find_map(|(n, c)| c.try_wait().ok().flatten().map(|s| (n.clone(), s)))
        {
            eprintln!(
                "mirrorfarm demo: {name} exited ({st}); see its logs under {}",
                work.display()
            );
            break ExitCode::from(70);
        }
        if !announced {
            if let Some(farm_id) = farm_ready(&layout, &http) {
                println!("{}", banner(&layout, &farm_id));
                announced = true;
            } else if started.elapsed() > Duration::from_secs(600) {
                eprintln!("mirrorfarm demo: the farm did not become ready within 10 minutes; see the logs under {}", work.display());
                break ExitCode::from(70);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    stop_all(&mut children);
    code
}
