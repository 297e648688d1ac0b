//! SSH in authenticated mode: a key is a user only if the farm knows it — from
//! `plugin.ssh.authorizedKeysFile` (reloaded when it changes) or `plugin.ssh.authorizedKeysCommand`
//! — and reads only the repositories its line names; an unknown key fails authentication, and a
//! repository it may not read answers exactly as one that is not mirrored.

use std::path::Path;
use std::time::Duration;

use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{keygen, Shape, Upstream};
use mirrorfarm_tests::{gitc, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

fn ssh_with(key: &Path) -> String {
    format!(
        "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
        key.display()
    )
}

fn ls_remote(node: &Node, repo: &str, key: &Path) -> std::process::Output {
    gitc::try_run(
        None,
        &["ls-remote", &node.ssh_url("PROJ", repo)],
        &[("GIT_SSH_COMMAND", &ssh_with(key))],
    )
}

fn public(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .expect("public key")
        .trim()
        .to_owned()
}

#[test]
fn only_known_keys_read_and_only_what_their_line_names() {
    let up = Upstream::new();
    up.create("PROJ", "a", &Shape::small());
    up.create("PROJ", "b", &Shape::small());
    let keys = tempfile::tempdir().expect("tempdir");
    let (alice, bob, carol) = (
        keys.path().join("alice"),
        keys.path().join("bob"),
        keys.path().join("carol"),
    );
    for k in [&alice, &bob, &carol] {
        keygen(k);
    }
    let file = keys.path().join("authorized_keys");
    std::fs::write(
        &file,
        format!(
            "# the farm's users\nuser=\"alice\",repos=\"PROJ/a\" {}\n",
            public(&alice)
        ),
    )
    .expect("authorized_keys");
    // The command knows carol, by the fingerprint OpenSSH's %f gives.
    let script = keys.path().join("keys-command");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = git ] || exit 1\nprintf '%s\\n' 'user=\"carol\",repos=\"PROJ/*\" {}'\n",
            public(&carol)
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let node = Node::start(
        &up.file_url(),
        &format!(
            "mirror.repos=PROJ/a,PROJ/b\nmirror.access=authenticated\nplugin.mirroring.upstream.auth.url=https://127.0.0.1:9/scm\n\
             plugin.ssh.authorizedKeysFile={}\nplugin.ssh.authorizedKeysCommand={} %u %f\n",
            file.display(),
            script.display()
        ),
    );
    node.wait_state("SYNCHRONIZED", LIMIT);

    // alice reads A, and B answers as if it were not mirrored.
    let out = ls_remote(&node, "a", &alice);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("refs/heads/main"));
    let out = ls_remote(&node, "b", &alice);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("repository PROJ/b is not mirrored here"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "not one ref of B: {out:?}");

    // bob's key is unknown: SSH authentication itself fails.
    let out = ls_remote(&node, "a", &bob);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );

    // carol is known to the command: she reads both.
    for repo in ["a", "b"] {
        let out = ls_remote(&node, repo, &carol);
        assert!(
            out.status.success(),
            "{repo}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // bob is added to the file: known without a restart.
    let mut text = std::fs::read_to_string(&file).expect("read");
    text.push_str(&format!("user=\"bob\",repos=\"PROJ/b\" {}\n", public(&bob)));
    std::fs::write(&file, text).expect("append");
    wait_for("bob's key to be known", LIMIT, || {
        ls_remote(&node, "b", &bob).status.success().then_some(())
    });
    assert!(
        !ls_remote(&node, "a", &bob).status.success(),
        "bob reads only B"
    );
}
