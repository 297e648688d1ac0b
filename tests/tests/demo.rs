//! `mirrorfarm demo`: the README's first command gives a working farm — three synchronized nodes
//! behind the load balancer, cloneable over verified HTTPS and over SSH — and stops on Ctrl-C.

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
