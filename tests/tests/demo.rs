//! `mirrorfarm demo`: the README's first command gives a working farm — three synchronized nodes
//! of one farm (one farm ID, one trigger followed by all), found by the load balancer by gossip,
//! cloneable over verified HTTPS and over SSH — and stops on Ctrl-C.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use mirrorfarm_tests::{bin, free_port, gitc, wait_for};

#[test]
fn demo_runs_a_farm_behind_the_lb() {
    let work = tempfile::tempdir().expect("tempdir");
    let (https, ssh) = (free_port(), free_port());
    let out_path = work.path().join("demo.out");
    let wd = work.path().join("w");
    let mut child = Command::new(bin())
        .args(["demo", "--workdir"])
        .arg(&wd)
        .args([
            "--https-port",
            &https.to_string(),
            "--ssh-port",
            &ssh.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo");
    let banner = wait_for("the demo banner", Duration::from_secs(180), || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("demo exited with {st}");
        }
        let mut s = String::new();
        std::fs::File::open(&out_path)
            .ok()?
            .read_to_string(&mut s)
            .ok()?;
        s.contains("mirrorfarm demo is ready").then_some(s)
    });
    let ca = wd.join("lb/tls/cert.pem");
    assert!(
        banner.contains(&format!("GIT_SSL_CAINFO={}", ca.display())),
        "{banner}"
    );
    let url = format!("https://localhost:{https}/scm/PLAT/kernel.git");
    assert!(banner.contains(&url), "{banner}");
    let ca_s = ca.display().to_string();
    let env = [("GIT_SSL_CAINFO", ca_s.as_str())];
    let refs = gitc::ls_remote(&url, &env);
    assert!(
        refs.contains_key("refs/tags/v15.0") && refs.contains_key("refs/heads/develop"),
        "{refs:?}"
    );
    let dest = work.path().join("clone");
    gitc::run(
        None,
        &["clone", "-q", "--bare", &url, dest.to_str().expect("utf8")],
        &env,
    );
    let n: usize = gitc::run(Some(&dest), &["rev-list", "--count", "main"], &[])
        .trim()
        .parse()
        .expect("count");
    assert!(n >= 1000, "{n} commits");
    let key = wd.join("node1/keys/upstream_ed25519");
    let ssh_cmd = format!(
        "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    );
    let listed = gitc::ls_remote(
        &format!("ssh://git@localhost:{ssh}/WEB/site.git"),
        &[("GIT_SSH_COMMAND", &ssh_cmd)],
    );
    assert!(listed.contains_key("refs/heads/main"));

    // One farm: every node names the same farm ID and counts three members.
    let ports: Vec<u16> = (1..=3)
        .map(|i| {
            let props = std::fs::read_to_string(wd.join(format!("node{i}/mirrorfarm.properties")))
                .expect("node properties");
            props
                .lines()
                .find_map(|l| l.strip_prefix("server.port="))
                .and_then(|p| p.trim().parse().ok())
                .expect("server.port")
        })
        .collect();
    let status = |port: u16| -> serde_json::Value {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/status"))
            .and_then(|r| r.json())
            .expect("status")
    };
    let farm_ids: std::collections::BTreeSet<String> = ports
        .iter()
        .map(|p| {
            let s = status(*p);
            assert_eq!(s["memberCount"], 3, "{s}");
            s["farmId"].as_str().expect("farmId").to_owned()
        })
        .collect();
    assert_eq!(farm_ids.len(), 1, "{farm_ids:?}");
    let lb_config = std::fs::read_to_string(wd.join("lb/mirrorfarm-lb.properties")).expect("lb");
    assert!(
        !lb_config.contains("lb.backends"),
        "the LB finds the nodes by gossip: {lb_config}"
    );

    // One trigger, to one node, and every node follows the change.
    let site = work.path().join("site");
    let upstream = wd.join("upstream/WEB/site.git");
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            upstream.to_str().expect("utf8"),
            site.to_str().expect("utf8"),
        ],
        &[],
    );
    gitc::run(
        Some(&site),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "hello",
        ],
        &[],
    );
    gitc::run(Some(&site), &["push", "-q", "origin", "HEAD:main"], &[]);
    let new = gitc::run(Some(&site), &["rev-parse", "HEAD"], &[])
        .trim()
        .to_owned();
    let answered = reqwest::blocking::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/rest/mirroring/latest/sync",
            ports[0]
        ))
        .json(&serde_json::json!({"project": "WEB", "repo": "site"}))
        .send()
        .expect("trigger");
    assert_eq!(answered.status().as_u16(), 202);
    for p in &ports {
        // Well within the nodes' own 30 s interval (a change takes well under a second).
        wait_for("the change on every node", Duration::from_secs(10), || {
            let refs = gitc::ls_remote(&format!("http://127.0.0.1:{p}/scm/WEB/site.git"), &[]);
            (refs.get("refs/heads/main") == Some(&new)).then_some(())
        });
    }
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let st = wait_for(
        "the demo to stop on Ctrl-C",
        Duration::from_secs(60),
        || child.try_wait().ok().flatten(),
    );
    assert!(st.success(), "{st}");
    let leftovers = Command::new("pgrep")
        .args(["-f", &wd.display().to_string()])
        .output()
        .expect("pgrep");
    assert!(
        leftovers.stdout.is_empty(),
        "processes left running: {}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
}
