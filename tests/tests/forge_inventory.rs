//! Mirroring whole projects of a forge: `mirror.projects=*` (and lists) with each forge's API
//! played by the stand-in of `forge_standin` (documented shapes, paging, token header), the
//! repositories themselves fetched from the real upstream directory the stand-in lists.
//! Shows: every repository of every project across several pages is served; one created or
//! deleted upstream appears or goes within one reconcile; a rate limit is waited out; a forge
//! that is down keeps the mirrors; `*` back to a list drops the rest; the admin's project search.

use std::path::Path;
use std::time::Duration;

use mirrorfarm_tests::forge_standin::{ForgeStandin, Kind};
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{gitc, wait_for, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "forge-token-0123456789";

/// A node mirroring `selection` of `forge`'s projects (the token in a file of `secrets`), the
/// repositories fetched from `up`'s directory; it re-lists every 4 s.
fn start(up: &Upstream, forge: &ForgeStandin, kind: Kind, selection: &str, secrets: &Path) -> Node {
    let token = secrets.join("api.token");
    std::fs::write(&token, TOKEN).expect("token");
    Node::start(
        &up.file_url(),
        &format!(
            "mirror.projects={selection}\nmirror.access=anonymous\n\
             plugin.mirroring.upstream.type={}\nplugin.mirroring.upstream.api.url={}\n\
             plugin.mirroring.upstream.api.tokenFile={}\n\
             plugin.mirroring.synchronization.interval=4\n",
            kind.name(),
            forge.api_url(),
            token.display()
        ),
    )
}

/// Every repository of several pages served; one created and one deleted upstream follow within
/// a reconcile; the token went in the forge's header (the stand-in answers 401 otherwise).
fn whole_projects_follow_the_forge(kind: Kind, projects: &[(&str, &[&str])]) {
    let up = Upstream::new();
    for (p, repos) in projects {
        for r in *repos {
            up.create(p, r, &Shape::small());
        }
    }
    let forge = ForgeStandin::start(kind, &up.root(), TOKEN, 2);
    let secrets = tempfile::tempdir().expect("secrets");
    let node = start(&up, &forge, kind, "*", secrets.path());
    let total: usize = projects.iter().map(|(_, r)| r.len()).sum();
    let s = wait_or_explain(
        "every listed repository synchronized",
        LIMIT,
        || {
            let s = node.status();
            (s["state"] == "SYNCHRONIZED" && s["totalRepos"] == total).then_some(s)
        },
        || {
            format!(
                "{}\nstand-in saw: {:#?}",
                node.explain(40),
                forge.requests()
            )
        },
    );
    assert_eq!(s["syncedRepos"], total);
    let (p, repos) = projects[0];
    let last = repos[repos.len() - 1];
    let work = tempfile::tempdir().expect("work");
    let dest = work.path().join("c");
    gitc::run(
        None,
        &[
            "clone",
            "-q",
            &node.http_url(p, last),
            dest.to_str().expect("utf8"),
        ],
        &[],
    );
    assert!(dest.join(".git").exists());
    let paged = forge
        .requests()
        .iter()
        .any(|r| r.contains("page=2") || r.contains("start=2"));
    assert!(paged, "the listing spanned pages: {:#?}", forge.requests());

    up.create(p, "created-later", &Shape::small());
    wait_for("a repository created upstream is served", LIMIT, || {
        (node.info_refs_status(p, "created-later") == 200).then_some(())
    });
    std::fs::remove_dir_all(up.repo(p, repos[0])).expect("rm");
    wait_for(
        "a repository deleted upstream stops being served",
        LIMIT,
        || (node.info_refs_status(p, repos[0]) == 404).then_some(()),
    );
    assert!(node.repo_status(p, repos[0]).is_none(), "gone from /status");
}

#[test]
fn bitbucket_projects_are_mirrored_whole() {
    whole_projects_follow_the_forge(
        Kind::Bitbucket,
        &[("PROJ", &["a", "b", "c", "d", "e"]), ("OTHER", &["x"])],
    );
}

#[test]
fn github_organisations_are_mirrored_whole() {
    whole_projects_follow_the_forge(
        Kind::Github,
        &[("octo", &["a", "b", "c", "d", "e"]), ("tools", &["x"])],
    );
}

#[test]
fn gitea_organisations_are_mirrored_whole() {
    whole_projects_follow_the_forge(
        Kind::Gitea,
        &[("org", &["a", "b", "c", "d", "e"]), ("team", &["x"])],
    );
}

#[test]
fn gitlab_groups_with_subgroups_are_mirrored_whole() {
    whole_projects_follow_the_forge(
        Kind::Gitlab,
        &[
            ("grp", &["a", "b", "c"]),
            ("grp/sub", &["d", "e"]),
            ("grp/sub/deep", &["f"]),
            ("other", &["x"]),
        ],
    );
}

/// The properties file of `node` with `from` replaced by `to`.
fn edit_properties(node: &Node, from: &str, to: &str) {
    let file = node.home().join("mirrorfarm.properties");
    let text = std::fs::read_to_string(&file).expect("properties");
    assert!(text.contains(from), "{from} in {text}");
    std::fs::write(&file, text.replace(from, to)).expect("write properties");
}

#[test]
fn limits_outages_and_a_narrower_selection() {
    let up = Upstream::new();
    for (p, r) in [("octo", "a"), ("octo", "b"), ("tools", "x")] {
        up.create(p, r, &Shape::small());
    }
    let forge = ForgeStandin::start(Kind::Github, &up.root(), TOKEN, 2);
    let secrets = tempfile::tempdir().expect("secrets");
    let mut node = start(&up, &forge, Kind::Github, "*", secrets.path());
    wait_for("3 repositories synchronized", LIMIT, || {
        let s = node.status();
        (s["state"] == "SYNCHRONIZED" && s["totalRepos"] == 3).then_some(())
    });

    // The admin's search over the upstream's projects (admin only).
    let found = node.get_json("/rest/mirroring/latest/upstream/projects?filter=OCT");
    assert_eq!(found["values"][0]["key"], "octo", "{found}");
    assert_eq!(found["values"][0]["selected"], true, "{found}");
    assert_eq!(
        (found["size"].as_u64(), found["all"].as_bool()),
        (Some(1), Some(true))
    );
    let relayed = reqwest::blocking::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/rest/mirroring/latest/upstream/projects",
            node.http
        ))
        .header("X-Forwarded-For", "198.51.100.7")
        .send()
        .expect("GET");
    assert_eq!(relayed.status().as_u16(), 401, "not an admin");

    // A rate limit is waited out: the limited request is made again and the listing completes.
    let before = forge.requests().len();
    forge.rate_limit_next();
    wait_for("the limited request made again", LIMIT, || {
        let seen = forge.requests();
        let after = &seen[before.min(seen.len())..];
        let first = after.first()?;
        (after.iter().filter(|r| *r == first).count() >= 2).then_some(())
    });
    assert_eq!(node.status()["totalRepos"], 3);

    // `*` back to a list: the other projects' mirrors go.
    node.stop();
    edit_properties(&node, "mirror.projects=*", "mirror.projects=tools");
    node.spawn();
    wait_for("only tools/x mirrored", LIMIT, || {
        let s = node.status();
        (s["state"] == "SYNCHRONIZED" && s["totalRepos"] == 1).then_some(())
    });
    assert_eq!(node.info_refs_status("octo", "a"), 404);
    assert!(
        !node.mirror_path("octo", "a").exists(),
        "its mirror removed"
    );
    assert_eq!(node.info_refs_status("tools", "x"), 200);

    // The forge down: the last listing stands, the mirror stays — two failed listings in a row,
    // so the first one's result was applied before the second started.
    drop(forge);
    let failed = |n: &Node| n.log().matches("keeping its last listing").count();
    let before = failed(&node);
    wait_for("two listings that failed", LIMIT, || {
        (failed(&node) >= before + 2).then_some(())
    });
    assert_eq!(node.status()["totalRepos"], 1);
    assert_eq!(node.info_refs_status("tools", "x"), 200);

    // Restarted while the forge is down: nothing listed before to keep, nothing removed.
    node.stop();
    let incomplete = |n: &Node| n.log().matches("no mirror is removed").count();
    let before = incomplete(&node);
    node.spawn();
    wait_for("two incomplete listings after the restart", LIMIT, || {
        (incomplete(&node) >= before + 2).then_some(())
    });
    assert_eq!(node.status()["totalRepos"], 1, "{}", node.explain(20));
    assert_eq!(node.info_refs_status("tools", "x"), 200);
    assert!(node.mirror_path("tools", "x").exists());
}

#[test]
fn a_rotated_token_is_read_again_on_sighup() {
    let up = Upstream::new();
    up.create("octo", "a", &Shape::small());
    let forge = ForgeStandin::start(Kind::Github, &up.root(), TOKEN, 10);
    let secrets = tempfile::tempdir().expect("secrets");
    let node = start(&up, &forge, Kind::Github, "*", secrets.path());
    wait_for("octo/a synchronized", LIMIT, || {
        let s = node.status();
        (s["state"] == "SYNCHRONIZED" && s["totalRepos"] == 1).then_some(())
    });
    // The forge takes a new token only; the file gets it, the node is not told yet.
    let rotated = "rotated-token-9876543210";
    forge.set_token(rotated);
    std::fs::write(secrets.path().join("api.token"), rotated).expect("token");
    up.create("octo", "b", &Shape::small());
    wait_for("a listing with the old token refused", LIMIT, || {
        (forge.unauthorized() > 0).then_some(())
    });
    assert!(
        node.repo_status("octo", "b").is_none(),
        "a refused listing adds nothing"
    );
    assert_eq!(node.status()["totalRepos"], 1, "and removes nothing");
    let pid = node.pid().expect("running");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    wait_for("octo/b listed with the new token and served", LIMIT, || {
        (node.info_refs_status("octo", "b") == 200).then_some(())
    });
    assert!(node.log().contains("api token re-read: changed"));
    assert!(!node.log().contains(rotated), "the token is never logged");
}
