//! The probe against real repositories, the real `git upload-pack` and states served by the real
//! sync (stage, then flip); the SSH hop is played by a script that runs the remote command with
//! the local shell, as sshd would.

use std::path::Path;

use super::stream::{probe, ProbeError};
use super::*;
use crate::sync::fetch;
use crate::testing::git;

const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

fn id(s: &str) -> RepoId {
    RepoId::parse(s).expect("repo id")
}

/// Syncs `up` into `mirror` as the node does (stage, flip); the served state's hash.
async fn sync(up: &Path, mirror: &Path) -> String {
    let rid = id("P/x");
    let repo = MirrorRepo::new(mirror.to_path_buf());
    let plan = crate::testing::file_plan(&rid, &repo, up).await;
    let staged = fetch::stage(&plan, None).await.expect("stage");
    fetch::flip(&plan, &staged).await.expect("flip");
    staged.hash
}

/// A bare repository at `path` with commits `one` and `two` (main at two) and an annotated tag.
fn upstream(path: &Path) -> (String, String) {
    let parent = path.parent().expect("parent");
    std::fs::create_dir_all(parent).expect("mkdir");
    git(
        parent,
        &["init", "-q", "--bare", path.to_str().expect("utf-8")],
    );
    let one = git(path, &["commit-tree", EMPTY_TREE, "-m", "one"]);
    let two = git(path, &["commit-tree", EMPTY_TREE, "-p", &one, "-m", "two"]);
    git(path, &["update-ref", "refs/heads/main", &two]);
    git(path, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    git(path, &["tag", "-a", "v1", "-m", "tag", &one]);
    (one, two)
}

/// A stand-in for ssh: runs its last argument (the remote command) with `sh`, or refuses it.
fn fake_ssh(dir: &Path, refuse: bool) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(if refuse { "refusing-ssh" } else { "ssh" });
    let body = if refuse {
        "#!/bin/sh\necho 'fatal: unrecognized command' >&2\nexit 128\n"
    } else {
        "#!/bin/sh\nfor a; do last=$a; done\nexec sh -c \"$last\"\n"
    };
    std::fs::write(&script, body).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    crate::sync::transport::sh_quote(&script.display().to_string())
}

#[tokio::test]
async fn confirms_exactly_the_states_a_sync_would_leave_as_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("up");
    let mirrors = dir.path().join("mirrors");
    let up = |r: &str| root.join(format!("P/{r}.git"));
    let mirror = |r: &str| mirrors.join(format!("{r}.git"));
    // Unchanged: an ordinary one; an empty one; one whose HEAD names a branch never pushed
    // (`git init --bare`, then only main); one whose HEAD is detached from every branch.
    // Changed: one that gained a branch, one that moved its HEAD to another branch at the same
    // commit (the mirror keeps its HEAD: unchanged), one whose mirror lost its HEAD file.
    let names = [
        "plain", "empty", "unborn", "detached", "branched", "rehead", "broken",
    ];
    for r in names {
        if r == "empty" {
            std::fs::create_dir_all(root.join("P")).expect("mkdir");
            git(&root, &["init", "-q", "--bare", "P/empty.git"]);
            continue;
        }
        let (one, _) = upstream(&up(r));
        match r {
            "unborn" => git(&up(r), &["symbolic-ref", "HEAD", "refs/heads/master"]).clear(),
            "detached" => git(&up(r), &["update-ref", "--no-deref", "HEAD", &one]).clear(),
            "rehead" => git(&up(r), &["branch", "dev", "main"]).clear(),
            _ => {}
        }
    }
    let mut served = Vec::new();
    for r in names {
        served.push(sync(&up(r), &mirror(r)).await);
    }
    git(&up("branched"), &["branch", "side", "main"]);
    git(&up("rehead"), &["symbolic-ref", "HEAD", "refs/heads/dev"]);
    std::fs::remove_file(mirror("broken").join("HEAD")).expect("rm HEAD");
    let mut candidates: Vec<Candidate> = names
        .iter()
        .zip(&served)
        .map(|(r, h)| Candidate::new(id(&format!("P/{r}")), h.clone(), mirror(r)))
        .collect();
    // Not there upstream: the upstream cannot read it.
    candidates.push(Candidate::new(
        id("P/missing"),
        served[0].clone(),
        mirror("plain"),
    ));
    let candidates = read_heads(candidates).await;
    let want: Vec<(String, bool)> = [
        ("plain", true),
        ("empty", true),
        ("unborn", true),
        ("detached", true),
        ("branched", false),
        ("rehead", true),
        ("broken", false),
        ("missing", false),
    ]
    .iter()
    .map(|(r, same)| (format!("P/{r}"), *same))
    .collect();
    let ssh = UpstreamUrl::parse(&format!("ssh://git@mirror.invalid{}", root.display()));
    let local = UpstreamUrl::parse(&format!("file://{}", root.display()));
    let via = [
        (ssh.expect("url"), Via::Ssh(fake_ssh(dir.path(), false))),
        (local.expect("url"), Via::Local),
    ];
    for (upstream, via) in via {
        let mut waiting: VecDeque<Candidate> = candidates.iter().cloned().collect();
        let mut answers = Vec::new();
        probe(&upstream, &via, &mut waiting, |c, adv| {
            answers.push((c.id.to_string(), c.unchanged(adv.as_ref())));
        })
        .await
        .expect("probe");
        assert_eq!(answers, want, "{via:?}");
        assert!(waiting.is_empty());
    }
    // What a sync of the changed ones serves now is what the probe would confirm next.
    let again = sync(&up("branched"), &mirror("branched")).await;
    assert_ne!(again, served[4]);
}

#[tokio::test]
async fn a_refused_command_leaves_every_repository_to_fetch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut waiting: VecDeque<Candidate> = ["P/a", "P/b"]
        .iter()
        .map(|r| Candidate::new(id(r), String::new(), dir.path().join(r)))
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
    let home = UpstreamUrl::parse("ssh://h/~git/repos").expect("url");
    assert_eq!(
        remote_path(&home, &id("P/a")).as_deref(),
        Some("~git/repos/P/a.git")
    );
}
