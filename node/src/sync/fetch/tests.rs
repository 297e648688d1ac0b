//! Tests of choosing HEAD, counting changes and the fetch itself.

use super::*;
use crate::packed_refs::RefValue;

fn map(items: &[(&str, &str)]) -> RefMap {
    items
        .iter()
        .map(|(n, o)| {
            (
                RefName::parse(n).expect("ref"),
                RefValue {
                    oid: o.to_string(),
                    peeled: None,
                },
            )
        })
        .collect()
}

#[test]
fn head_choice_and_change_count() {
    let staged = map(&[
        ("refs/heads/dev", "1"),
        ("refs/heads/main", "1"),
        ("refs/heads/x", "2"),
    ]);
    let pick = |cur| choose_head(&staged, Some("1"), cur).map(|r| r.to_string());
    assert_eq!(pick(None).as_deref(), Some("refs/heads/main"));
    assert_eq!(
        pick(Some("refs/heads/dev")).as_deref(),
        Some("refs/heads/dev")
    );
    assert_eq!(
        pick(Some("refs/heads/x")).as_deref(),
        Some("refs/heads/main")
    );
    assert!(choose_head(&staged, None, None).is_none());
    let old = map(&[("refs/heads/main", "0"), ("refs/heads/gone", "3")]);
    let (n, listed) = changes(&old, &staged);
    assert_eq!(n, 4);
    let gone = listed
        .iter()
        .find(|c| c.name == "refs/heads/gone")
        .expect("deleted ref listed");
    assert_eq!(
        (gone.before.as_deref(), gone.after.as_deref()),
        (Some("3"), None)
    );
    let main = listed
        .iter()
        .find(|c| c.name == "refs/heads/main")
        .expect("changed ref listed");
    assert_eq!(
        (main.before.as_deref(), main.after.as_deref()),
        (Some("0"), Some("1"))
    );
}

#[tokio::test]
async fn a_fetch_leaves_no_automatic_maintenance_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = dir.path().join("up.git");
    let git = crate::testing::git;
    git(dir.path(), &["init", "-q", "--bare", "up.git"]);
    let tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    let commit = git(&up, &["commit-tree", tree, "-m", "one"]);
    git(&up, &["update-ref", "refs/heads/main", &commit]);
    let up_s = up.to_str().expect("utf-8 path");
    let trace = dir.path().join("trace");
    // The machine's own git settings (a global `maintenance.auto = false`, say) stay out.
    let env = [
        ("GIT_TRACE", trace.display().to_string()),
        ("GIT_CONFIG_GLOBAL", "/dev/null".to_owned()),
        ("GIT_CONFIG_NOSYSTEM", "1".to_owned()),
    ];
    let (id, repo) = (
        RepoId::parse("P/r").expect("id"),
        MirrorRepo::new(dir.path().join("P/r.git")),
    );
    let version = crate::gitcmd::check_git().await.expect("git version");
    let plan = FetchPlan {
        id: &id,
        repo: &repo,
        url: format!("file://{up_s}"),
        env: &env,
        timeout: Duration::from_secs(60),
        git: version,
        member_config: None,
    };
    let staged = stage(&plan, None).await.expect("stage");
    assert_eq!(staged.refs.len(), 1, "{:?}", staged.refs);
    let trace = std::fs::read_to_string(&trace).expect("trace");
    // The trace shows the processes the fetch started (the upload-pack at least), and none
    // of them is git's automatic maintenance (an older git has no way to leave it out).
    assert!(trace.contains("git-upload-pack"), "{trace}");
    if version < NO_AUTO_MAINTENANCE {
        eprintln!("git {version:?} always starts gc --auto after a fetch: not checked");
        return;
    }
    assert!(
        !trace.contains("maintenance run") && !trace.contains("gc --auto"),
        "{trace}"
    );
}
