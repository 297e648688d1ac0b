//! Admin logins with a forge's personal access token. The upstream's git endpoint takes a token
//! as the password under ANY user name (as GitHub, GitLab and Gitea do over HTTPS), so the made-up
//! name check cannot tell who logs in: the node asks the forge's API whose the token is (GitHub's
//! `GET /user`, played by the stand-in with the documented answer). alice's token logs alice in;
//! eve's token does not log in alice; a token the API does not take is refused; a password bound
//! to its name still logs in without asking the API; without a forge API a token is refused.

use std::time::Duration;

use mirrorfarm_tests::forge_standin::{ForgeStandin, Kind};
use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use reqwest::blocking::{Client, Response};

const LIMIT: Duration = Duration::from_secs(60);

fn login(node: &Node, user: &str, password: &str) -> (u16, String, Option<String>) {
    let base = node.http_url("X", "y");
    let base = base.split("/scm/").next().expect("base");
    let r: Response = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
        .post(format!("{base}/admin/login"))
        .form(&[("username", user), ("password", password)])
        .send()
        .expect("POST /admin/login");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("BITBUCKETSESSIONID=") && !c.starts_with("BITBUCKETSESSIONID=;"))
        .map(str::to_owned);
    (r.status().as_u16(), r.text().unwrap_or_default(), cookie)
}

#[test]
fn a_token_logs_in_the_user_the_forge_says_it_is() {
    let mut up = Upstream::new();
    up.create("PROJ", "a", &Shape::small());
    up.start_sshd();
    let http = HttpUpstream::start_with_tokens(
        &up.root(),
        &[("carol", "carol-pw")],
        &[
            ("ghp-alice-0123456789", "alice"),
            ("ghp-eve-0123456789", "eve"),
            ("ghp-noscope-0123456789", "alice"),
        ],
        &[("PROJ/a", &["alice", "eve", "carol"])],
    );
    let forge = ForgeStandin::start(Kind::Github, &up.root(), "farm-api-token-0123", 50);
    forge.add_personal_token("alice", "ghp-alice-0123456789");
    forge.add_personal_token("eve", "ghp-eve-0123456789");
    let dir = tempfile::tempdir().expect("tempdir");
    let api_token = dir.path().join("api.token");
    std::fs::write(&api_token, "farm-api-token-0123").expect("api token");
    let common = format!(
        "mirror.repos=PROJ/a\nmirror.access=authenticated\nmirror.admins=alice,carol\n{}",
        http.properties()
    );
    let node = Node::start(
        &up.ssh_url(),
        &format!(
            "{common}plugin.mirroring.upstream.type=github\nplugin.mirroring.upstream.api.url={}\n\
             plugin.mirroring.upstream.api.tokenFile={}\n",
            forge.api_url(),
            api_token.display()
        ),
    );
    node.authorize_and_sync(&up, LIMIT);

    // alice's own token, under her name: the forge says it is hers.
    let (status, body, cookie) = login(&node, "alice", "ghp-alice-0123456789");
    assert_eq!(status, 303, "{body}");
    assert!(cookie.is_some(), "a session for alice");
    assert!(
        forge
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v3/user?")),
        "the forge was asked whose the token is: {:?}",
        forge.requests()
    );
    // eve's token works for git under any name, alice's included — but it is not alice's.
    let (status, body, cookie) = login(&node, "alice", "ghp-eve-0123456789");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not alice&#39;s"), "{body}");
    assert!(cookie.is_none());
    // A token git takes but the API does not (no scope to read its user): refused.
    let (status, body, _) = login(&node, "alice", "ghp-noscope-0123456789");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("API does not take this token"), "{body}");
    // A token nobody has: git refuses it already.
    let (status, body, _) = login(&node, "alice", "ghp-nobody-0123456789");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("wrong user name or password"), "{body}");
    // carol's password is bound to her name: no API question needed.
    let asked = forge.requests().len();
    let (status, body, cookie) = login(&node, "carol", "carol-pw");
    assert_eq!(status, 303, "{body}");
    assert!(cookie.is_some());
    assert_eq!(forge.requests().len(), asked, "{:?}", forge.requests());
    drop(node);

    // Without the forge's API, a token (any name) cannot name its user: refused.
    let plain = Node::start(&up.ssh_url(), &common);
    plain.authorize_and_sync(&up, LIMIT);
    let (status, body, cookie) = login(&plain, "alice", "ghp-alice-0123456789");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("any user name"), "{body}");
    assert!(cookie.is_none());
}
