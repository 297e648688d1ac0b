//! The demo's upstream: a `file://` tree with two projects and three repositories of real
//! generated history (one with 1500 commits), branches and annotated tags.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

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

/// Creates the demo upstream under `dir` unless it is there already.
pub fn ensure(dir: &Path) -> Result<(), String> {
    for (project, repo, commits) in REPOS {
        let path = dir.join(project).join(format!("{repo}.git"));
        if path.join("HEAD").exists() {
            continue;
        }
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        git(&path, &["init", "--bare", "-q"])?;
        git(&path, &["symbolic-ref", "HEAD", "refs/heads/main"])?;
        generate(&path, repo, commits)?;
    }
    Ok(())
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
