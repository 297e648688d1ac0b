//! `mirrorfarm demo`: a working mirror on this machine in one command — a generated `file://`
//! upstream (two projects, three repositories with real history, branches and tags) and a node
//! serving it over HTTP and SSH. (The load balancer and more nodes join with the farm issues.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Demo options.
pub struct DemoOptions {
    /// Where everything lives (reused by a second run).
    pub workdir: PathBuf,
    /// Node HTTP port.
    pub http_port: u16,
    /// Node SSH port.
    pub ssh_port: u16,
}

const REPOS: [(&str, &str, usize); 3] = [
    ("PLAT", "kernel", 1500),
    ("PLAT", "tools", 120),
    ("WEB", "site", 300),
];

fn git(dir: &Path, args: &[&str]) -> Result<(), String> {
    let st = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run git: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("git {args:?} failed"))
}

/// Creates the demo upstream (once) and the node's home; returns the home.
pub fn prepare(opts: &DemoOptions) -> Result<PathBuf, String> {
    let upstream = opts.workdir.join("upstream");
    for (project, repo, commits) in REPOS {
        let path = upstream.join(project).join(format!("{repo}.git"));
        if path.join("HEAD").exists() {
            continue;
        }
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        git(&path, &["init", "--bare", "-q"])?;
        git(&path, &["symbolic-ref", "HEAD", "refs/heads/main"])?;
        generate(&path, repo, commits)?;
    }
    let home = opts.workdir.join("node1");
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    let props = format!(
        "# Written by `mirrorfarm demo`.\napplication.mode=mirror\nsetup.displayName=mirrorfarm demo\n\
         setup.baseUrl=http://localhost:{http}\nplugin.mirroring.upstream.url=file://{up}\n\
         plugin.mirroring.synchronization.interval=30\nmirror.projects=*\nmirror.access=anonymous\n\
         server.address=127.0.0.1\nserver.port={http}\nplugin.ssh.address=127.0.0.1\nplugin.ssh.port={ssh}\n",
        http = opts.http_port,
        ssh = opts.ssh_port,
        up = upstream.display()
    );
    std::fs::write(home.join("mirrorfarm.properties"), props)
        .map_err(|e| format!("{}: {e}", home.display()))?;
    Ok(home)
}

/// Writes `commits` commits (a few files changing each time), 3 branches and a tag every 100 commits.
fn generate(path: &Path, name: &str, commits: usize) -> Result<(), String> {
    let mut child = Command::new("git")
        .current_dir(path)
        .args(["fast-import", "--quiet"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git fast-import: {e}"))?;
    let mut w = std::io::BufWriter::new(child.stdin.take().ok_or("fast-import stdin")?);
    let mut out = || -> std::io::Result<()> {
        for i in 1..=commits {
            let body = format!(
                "// {name}: revision {i}\nfn step_{i}() -> u64 {{ {} }}\n",
                i * 7919 % 1000
            );
            let msg = format!("{name}: change {i}\n");
            write!(
                w,
                "commit refs/heads/main\nmark :{i}\ncommitter Demo <demo@example.com> {} +0000\ndata {}\n{msg}",
                1_700_000_000 + i * 3600,
                msg.len()
            )?;
            if i > 1 {
                writeln!(w, "from :{}", i - 1)?;
            }
            writeln!(
                w,
                "M 100644 inline src/mod{}.rs\ndata {}\n{body}",
                i % 13,
                body.len()
            )?;
            if i % 100 == 0 {
                let t = format!("release {}\n", i / 100);
                write!(
                    w,
                    "tag v{}.0\nfrom :{i}\ntagger Demo <demo@example.com> {} +0000\ndata {}\n{t}",
                    i / 100,
                    1_700_000_000 + i * 3600,
                    t.len()
                )?;
            }
        }
        for (b, at) in [
            ("develop", commits),
            ("release/1.x", commits / 2),
            ("feature/demo", commits * 3 / 4),
        ] {
            writeln!(w, "reset refs/heads/{b}\nfrom :{}\n", at.max(1))?;
        }
        w.flush()
    };
    out().map_err(|e| format!("writing to git fast-import: {e}"))?;
    drop(w);
    let st = child.wait().map_err(|e| format!("git fast-import: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| "git fast-import failed".into())
}

/// What to print once the node is synchronized.
pub fn banner(opts: &DemoOptions) -> String {
    let up = opts.workdir.join("upstream");
    format!(
        "\nmirrorfarm demo is ready.\n\n\
         Clone over HTTP:  git clone http://localhost:{http}/scm/PLAT/kernel.git\n\
         Clone over SSH:   git clone ssh://git@localhost:{ssh}/PLAT/kernel.git\n\
         Status:           http://localhost:{http}/status   (page: http://localhost:{http}/)\n\n\
         Push a change to the demo upstream and watch it arrive:\n\
         \x20 git clone {up}/WEB/site.git /tmp/site && cd /tmp/site\n\
         \x20 git commit --allow-empty -m hello && git push origin HEAD:main\n\
         \x20 curl -X POST http://localhost:{http}/rest/mirroring/latest/sync \\\n\
         \x20      -H 'Content-Type: application/json' -d '{{\"project\":\"WEB\",\"repo\":\"site\"}}'\n\
         \x20 git ls-remote http://localhost:{http}/scm/WEB/site.git main\n\n\
         Ctrl-C stops the demo; running it again reuses {work}.\n",
        http = opts.http_port,
        ssh = opts.ssh_port,
        up = up.display(),
        work = opts.workdir.display()
    )
}
