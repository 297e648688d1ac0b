//! The probe against real repositories and the real `git-upload-pack`; the SSH hop is played by
//! a script that runs the remote command with the local shell, as sshd would.

use std::path::Path;

use super::*;
use crate::names::RefName;
use crate::packed_refs::{refs_hash, RefMap, RefValue};
use crate::testing::git;

fn id(s: &str) -> RepoId {
    RepoId::parse(s).expect("repo id")
}

/// The hash a sync would serve for `repo` (its refs, HEAD naming `head`).
fn served_hash(repo: &Path, head: Option<&str>) -> String {
    let refs: RefMap = git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(oid, name)| {
            (
                RefName::parse(name).expect("ref"),
                RefValue {
                    oid: oid.to_owned(),
                    peeled: None,
                },
            )
        })
        .collect();
    let head = head.map(|h| RefName::parse(h).expect("head"));
    refs_hash(&refs, head.as_ref())
}

/// A stand-in for ssh: runs its last argument (the remote command) with `sh`, or says `refuse`.
fn fake_ssh(dir: &Path, refuse: bool) -> String {
    let script = dir.join(if refuse { "refusing-ssh" } else { "ssh" });
    let body = if refuse {
        "#!/bin/sh\necho 'fatal: unrecognized command' >&2\nexit 128\n"
    } else {
        "#!/bin/sh\nfor a; do last=$a; done\nexec sh -c \"$last\"\n"
    };
    std::fs::write(&script, body).expect("write script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    crate::sync::transport::sh_quote(&script.display().to_string())
}

#[tokio::test]
async fn tells_unchanged_from_changed_and_unreadable_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("up");
    let work = dir.path().join("work");
    std::fs::create_dir_all(root.join("P")).expect("mkdir");
    git(dir.path(), &["init", "-q", work.to_str().expect("utf-8")]);
    git(&work, &["commit", "-q", "--allow-empty", "-m", "one"]);
    git(&work, &["tag", "-a", "v1", "-m", "tag"]);
    for r in ["a", "b"] {
        let path = root.join(format!("P/{r}.git"));
        git(
            dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                "work",
                path.to_str().expect("utf-8"),
            ],
        );
    }
    let empty = root.join("P/empty.git");
    git(
        dir.path(),
        &["init", "-q", "--bare", empty.to_str().expect("utf-8")],
    );
    let a = root.join("P/a.git");
    let b = root.join("P/b.git");
    let served_b = served_hash(&b, Some("refs/heads/main"));
    // b moves on upstream after the state served here.
    git(&b, &["branch", "dev", "main"]);
    let candidates = [
        ("P/a", served_hash(&a, Some("refs/heads/main"))),
        ("P/b", served_b),
        ("P/missing", served_hash(&empty, None)),
        ("P/empty", served_hash(&empty, None)),
    ];
    let waiting: VecDeque<Candidate> = candidates
        .iter()
        .map(|(r, h)| Candidate {
            id: id(r),
            served: h.clone(),
        })
        .collect();
    let upstream =
        UpstreamUrl::parse(&format!("ssh://git@mirror.invalid{}", root.display())).expect("url");
    assert_eq!(
        remote_path(&upstream, &id("P/a")).as_deref(),
        Some(a.to_str().expect("utf-8"))
    );
    let local = UpstreamUrl::parse(&format!("file://{}", root.display())).expect("url");
    let via = [
        (upstream, Via::Ssh(fake_ssh(dir.path(), false))),
        (local, Via::Local),
    ];
    for (upstream, via) in via {
        let mut waiting = waiting.iter().map(Candidate::clone).collect();
        let mut answers = Vec::new();
        probe(&upstream, &via, &mut waiting, |id, same| {
            answers.push((id.to_string(), same))
        })
        .await
        .expect("probe");
        let want = [
            ("P/a", true),
            ("P/b", false),
            ("P/missing", false),
            ("P/empty", true),
        ];
        let want: Vec<(String, bool)> = want.iter().map(|(r, s)| (r.to_string(), *s)).collect();
        assert_eq!(answers, want, "{via:?}");
        assert!(waiting.is_empty());
    }
}

#[tokio::test]
async fn a_refused_command_leaves_every_repository_to_fetch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut waiting: VecDeque<Candidate> = ["P/a", "P/b"]
        .iter()
        .map(|r| Candidate {
            id: id(r),
            served: String::new(),
        })
        .collect();
    let upstream = UpstreamUrl::parse("ssh://git@mirror.invalid/srv").expect("url");
    let via = Via::Ssh(fake_ssh(dir.path(), true));
    let mut answered = 0;
    let res = probe(&upstream, &via, &mut waiting, |_, _| answered += 1).await;
    match res {
        Err(ProbeError::Ended(said)) => assert!(said.contains("unrecognized command"), "{said}"),
        other => panic!("{other:?}"),
    }
    assert_eq!((answered, waiting.len()), (0, 2));
    assert_eq!(
        remote_path(
            &UpstreamUrl::parse("ssh://h/~git/repos").expect("url"),
            &id("P/a")
        )
        .as_deref(),
        Some("~git/repos/P/a.git")
    );
}
