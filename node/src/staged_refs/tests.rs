//! A member's `ls-refs` of a staged state, answered from memory, is byte for byte what
//! `git upload-pack` answers with the staged state un-hidden.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::*;
use crate::mirror_repo::MirrorRepo;
use crate::serve::ls_refs::LsRefs;
use crate::serve::ls_refs::RefList;
use crate::sync::fetch::{flip, stage};
use crate::testing::git;
use crate::upload_pack::{Exposure, Mode};

/// git's own answer to `ls-refs` with `args`, from the mirror at `path`.
async fn git_ls_refs(path: &Path, args: &LsRefs) -> Vec<u8> {
    let mut req = crate::pktline::pkt("command=ls-refs\n");
    req.extend(crate::pktline::pkt("object-format=sha1\n"));
    req.extend_from_slice(b"0001");
    for (on, arg) in [
        (args.peel, "peel"),
        (args.symrefs, "symrefs"),
        (args.unborn, "unborn"),
    ] {
        if on {
            req.extend(crate::pktline::pkt(&format!("{arg}\n")));
        }
    }
    for p in &args.prefixes {
        req.extend(crate::pktline::pkt(&format!("ref-prefix {p}\n")));
    }
    req.extend_from_slice(crate::pktline::FLUSH);
    let mut child = crate::upload_pack::spawn(
        path,
        Mode::StatelessRpc,
        Exposure::Staged,
        Some("version=2"),
    )
    .expect("spawn upload-pack");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&req).await.expect("write request");
    drop(stdin);
    let out = child.wait_with_output().await.expect("upload-pack");
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

/// Compares what is written from `list` with what git answers from the repository at `path`:
/// the v0 advertisement and `ls-refs` with a member's arguments and others; returns those.
async fn same_as_git(path: &Path, list: &RefList) -> Vec<LsRefs> {
    // What a member's fetch asks (git's prefixes for its two refspecs), and other askers.
    let head_prefixes = ["", "refs/", "refs/tags/", "refs/heads/", "refs/remotes/"]
        .iter()
        .map(|p| format!("{p}{STAGING_HEAD}"))
        .chain([format!("refs/remotes/{STAGING_HEAD}/HEAD")]);
    let member = LsRefs {
        peel: true,
        symrefs: true,
        unborn: false,
        prefixes: std::iter::once(STAGING.to_owned())
            .chain(head_prefixes)
            .collect(),
    };
    let cases = [
        member,
        LsRefs {
            peel: true,
            symrefs: true,
            unborn: true,
            prefixes: vec![],
        },
        LsRefs {
            prefixes: vec!["HEAD".into(), "refs/tags/".into()],
            ..Default::default()
        },
        LsRefs::default(),
    ];
    for args in &cases {
        let ours = list.ls_refs(args);
        let theirs = git_ls_refs(path, args).await;
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{args:?}"
        );
    }
    // The v0 advertisement, with git's capabilities read from another of its advertisements.
    let theirs = {
        let mut child = crate::upload_pack::spawn(path, Mode::Advertise, Exposure::Staged, None)
            .expect("spawn upload-pack");
        crate::gitcmd::collect(&mut child, "upload-pack", Duration::from_secs(30))
            .await
            .expect("advertisement")
            .stdout
    };
    let refs = StagedRefs::default();
    let caps = refs.v0_caps(path).await.expect("caps");
    let ours = crate::serve::v0_advert::advertisement(list, caps);
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs)
    );
    cases.to_vec()
}

#[tokio::test]
async fn a_staged_state_is_listed_as_git_lists_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = dir.path().join("up.git");
    git(dir.path(), &["init", "-q", "--bare", "up.git"]);
    let tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    let one = git(&up, &["commit-tree", tree, "-m", "one"]);
    let two = git(&up, &["commit-tree", tree, "-p", &one, "-m", "two"]);
    git(&up, &["update-ref", "refs/heads/main", &one]);
    git(&up, &["update-ref", "refs/heads/dev", &two]);
    git(&up, &["tag", "-a", "-m", "v1", "v1", &one]);
    git(&up, &["tag", "-a", "-m", "outer", "outer", "v1"]);
    git(&up, &["tag", "light", &two]);
    let (id, repo) = (
        RepoId::parse("P/r").expect("id"),
        MirrorRepo::new(dir.path().join("P/r.git")),
    );
    let plan = crate::testing::file_plan(&id, &repo, &up).await;
    // A served state, then a different one staged beside it (a branch gone, one new, main moved).
    let first = stage(&plan, None).await.expect("stage");
    // The first state: nothing served, HEAD names a branch that does not exist yet.
    same_as_git(repo.path(), &listing(&first)).await;
    flip(&plan, &first).await.expect("flip");
    git(&up, &["update-ref", "-d", "refs/heads/dev"]);
    git(&up, &["update-ref", "refs/heads/main", &two]);
    git(&up, &["update-ref", "refs/heads/feature", &one]);
    let staged = stage(&plan, None).await.expect("stage again");
    assert_ne!(staged.hash, first.hash);
    let list = listing(&staged);
    let cases = same_as_git(repo.path(), &list).await;
    // The member's answer holds the staged state: main moved, dev gone, the staged HEAD.
    let answer = String::from_utf8(list.ls_refs(&cases[0])).expect("utf-8");
    assert!(
        answer.contains(&format!("{two} {STAGING}heads/main\n")),
        "{answer}"
    );
    assert!(!answer.contains(&format!("{STAGING}heads/dev")), "{answer}");
    assert!(
        answer.contains(&format!("{two} {STAGING_HEAD}\n")),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("{STAGING}tags/outer peeled:{one}\n")),
        "{answer}"
    );
    // Kept while the guard lives (the sync between stage and flip), not after.
    let refs = StagedRefs::default();
    let kept = refs.keep(&id, &staged);
    assert!(refs.get(&id).is_some());
    drop(kept);
    assert!(refs.get(&id).is_none());
}
