//! SSH users from the forge (`plugin.ssh.keys=forge`), for each of the four forges played by the
//! stand-in (documented shapes): a key the farm's files do not hold but the forge knows is its
//! user's, who clones over SSH what the forge says it may read and nothing else; a key the forge
//! does not know is refused.

use std::path::Path;
use std::time::Duration;

use mirrorfarm_tests::forge_standin::{ForgeStandin, Kind};
use mirrorfarm_tests::gitc;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{keygen, Shape, Upstream};

const LIMIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "admin-token-0123456789";

fn ssh_clone(node: &Node, key: &Path, repo: &str, dest: &Path) -> (bool, String) {
    let ssh = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
        key.display()
    );
    let url = node.ssh_url("P", repo);
    let out = gitc::try_run(
        None,
        &["clone", "-q", &url, dest.to_str().expect("utf8")],
        &[("GIT_SSH_COMMAND", &ssh)],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn the_forge_says_who_reads_what(kind: Kind) {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.create("P", "other", &Shape::small());
    let forge = ForgeStandin::start(kind, &up.root(), TOKEN, 2);
    let secrets = tempfile::tempdir().expect("secrets");
    let token = secrets.path().join("api.token");
    std::fs::write(&token, TOKEN).expect("token");
    let node = Node::start(
        &up.file_url(),
        &format!(
            "mirror.repos=P/r,P/other\nplugin.mirroring.upstream.auth.url={}\n\
             plugin.mirroring.upstream.type={}\nplugin.mirroring.upstream.api.url={}\n\
             plugin.mirroring.upstream.api.tokenFile={}\nplugin.ssh.keys=forge\n",
            forge.api_url(),
            kind.name(),
            forge.api_url(),
            token.display()
        ),
    );
    let public = std::fs::read_to_string(format!("{}.pub", node.client_key().display()))
        .expect("client key");
    forge.add_user("alice", &public, &["P/r"]);
    node.wait_state("SYNCHRONIZED", LIMIT);
    let work = tempfile::tempdir().expect("work");
    let (ok, err) = ssh_clone(&node, node.client_key(), "r", &work.path().join("r"));
    assert!(
        ok,
        "alice may read P/r: {err}\n{}\nforge saw {:#?}",
        node.explain(30),
        forge.requests()
    );
    assert!(work.path().join("r/.git").exists());
    let (ok, err) = ssh_clone(
        &node,
        node.client_key(),
        "other",
        &work.path().join("other"),
    );
    assert!(!ok, "alice may not read P/other");
    assert!(
        err.contains("not mirrored here"),
        "told as for a repository not mirrored: {err}"
    );
    let stranger = work.path().join("stranger");
    keygen(&stranger);
    let (ok, err) = ssh_clone(&node, &stranger, "r", &work.path().join("r2"));
    assert!(!ok, "a key nobody knows");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn gitlab_keys_and_memberships_decide() {
    the_forge_says_who_reads_what(Kind::Gitlab);
}

#[test]
fn github_enterprise_keys_and_collaborators_decide() {
    the_forge_says_who_reads_what(Kind::Github);
}

#[test]
fn gitea_keys_and_collaborators_decide() {
    the_forge_says_who_reads_what(Kind::Gitea);
}

#[test]
fn bitbucket_keys_and_repository_permissions_decide() {
    the_forge_says_who_reads_what(Kind::Bitbucket);
}
