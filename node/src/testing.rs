//! Helpers of the node's unit tests.

use std::path::Path;

/// Runs git in `dir` (with an identity and `main` as the first branch); its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A sync of `repo` (as `id`) from the bare repository `up` by `file://`, as the node plans one.
pub async fn file_plan<'a>(
    id: &'a crate::names::RepoId,
    repo: &'a crate::mirror_repo::MirrorRepo,
    up: &Path,
) -> crate::sync::fetch::FetchPlan<'a> {
    crate::sync::fetch::FetchPlan {
        id,
        repo,
        url: format!("file://{}", up.display()),
        env: &[],
        timeout: std::time::Duration::from_secs(60),
        git: crate::gitcmd::check_git().await.expect("git version"),
        member_config: None,
    }
}
