//! `mirrorfarm demo`: the README's first command gives a working, synchronized mirror.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use mirrorfarm_tests::{bin, free_port, gitc, wait_for};

#[test]
fn demo_serves_generated_repositories() {
    let work = tempfile::tempdir().expect("tempdir");
    let (http, ssh) = (free_port(), free_port());
    let out_path = work.path().join("demo.out");
    let mut child = Command::new(bin())
        .args(["demo", "--workdir"])
        .arg(work.path().join("w"))
        .args([
            "--http-port",
            &http.to_string(),
            "--ssh-port",
            &ssh.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo");
    wait_for("the demo banner", Duration::from_secs(120), || {
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
    let url = format!("http://127.0.0.1:{http}/scm/PLAT/kernel.git");
    let refs = gitc::ls_remote(&url, &[]);
    assert!(
        refs.contains_key("refs/tags/v15.0") && refs.contains_key("refs/heads/develop"),
        "{refs:?}"
    );
    let dest = work.path().join("clone");
    gitc::run(
        None,
        &["clone", "-q", "--bare", &url, dest.to_str().expect("utf8")],
        &[],
    );
    let n: usize = gitc::run(Some(&dest), &["rev-list", "--count", "main"], &[])
        .trim()
        .parse()
        .expect("count");
    assert!(n >= 1000, "{n} commits");
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let st = wait_for(
        "the demo to stop on Ctrl-C",
        Duration::from_secs(30),
        || child.try_wait().ok().flatten(),
    );
    assert!(st.success(), "{st}");
}
