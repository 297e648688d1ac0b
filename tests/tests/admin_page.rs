//! The admin page at `/admin` against a real upstream endpoint (nginx + HTTP Basic + `git
//! http-backend`; alice is an admin, bob is not): the login with upstream credentials or the
//! admin token, 401/403 for the others, CSRF on every action, the token for scripts, the page's
//! sections, "sync now", and logout.

use std::time::Duration;

use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::wait_for;
use reqwest::blocking::{Client, Response};
use reqwest::redirect::Policy;

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "admin-page-test-token-0123456789";

struct Setup {
    _up: Upstream,
    _http: HttpUpstream,
    _dir: tempfile::TempDir,
    node: Node,
}

fn setup() -> Setup {
    let mut up = Upstream::new();
    up.create("PROJ", "a", &Shape::small());
    up.create("PROJ", "b", &Shape::small());
    up.start_sshd();
    let http = HttpUpstream::start(
        &up.root(),
        &[
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("carol", "carol-pw"),
        ],
        &[
            ("PROJ/a", &["alice", "bob", "carol"]),
            ("PROJ/b", &["alice", "bob", "carol"]),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let node = Node::start(
        &up.ssh_url(),
        &format!(
            "mirror.repos=PROJ/a,PROJ/b\nmirror.access=authenticated\nmirror.admins=alice,carol\n\
             mirror.admin.plotInterval=1\n\
             mirror.admin.tokenFile={}\n{}",
            token_file.display(),
            http.properties()
        ),
    );
    // Until each sync has finished (its record, with the size on disk, is complete then).
    node.authorize_and_sync(&up, LIMIT);
    Setup {
        _up: up,
        _http: http,
        _dir: dir,
        node,
    }
}

/// A client that shows redirects instead of following them, keeping no cookies of its own.
fn client() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn login(node: &Node, fields: &[(&str, &str)]) -> Response {
    client()
        .post(format!("{}/admin/login", node.base_url()))
        .form(fields)
        .send()
        .expect("POST /admin/login")
}

/// The session cookie (`name=value`) a response sets.
fn session_cookie(r: &Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("BITBUCKETSESSIONID=") && !c.starts_with("BITBUCKETSESSIONID=;"))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in {:?}", r.headers()))
        .to_owned()
}

fn get_admin(node: &Node, cookie: Option<&str>, bearer: Option<&str>) -> (u16, String) {
    let mut r = client().get(format!("{}/admin", node.base_url()));
    if let Some(c) = cookie {
        r = r.header("Cookie", c);
    }
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    let resp = r.send().expect("GET /admin");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

/// The CSRF token of the page's forms.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=csrf value=\"")
        .expect("a CSRF field on the page")
        + 17;
    page[at..].split('"').next().expect("token").to_owned()
}

fn sync_form(node: &Node, cookie: Option<&str>, fields: &[(&str, &str)]) -> Response {
    let mut r = client()
        .post(format!("{}/admin/sync", node.base_url()))
        .form(fields);
    if let Some(c) = cookie {
        r = r.header("Cookie", c);
    }
    r.send().expect("POST /admin/sync")
}

fn last_sync(node: &Node, repo: &str) -> String {
    node.repo_status("PROJ", repo).expect("repo")["lastSync"].to_string()
}

#[test]
fn admins_log_in_with_upstream_credentials_and_every_action_needs_the_sessions_csrf_token() {
    let s = setup();
    let node = &s.node;

    // Nobody: 401 with the login form.
    let (status, body) = get_admin(node, None, None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("action=\"/admin/login\"") && !body.contains(TOKEN));
    assert!(!body.contains("PROJ/a"), "no repository is shown to nobody");

    // A wrong password: 401; bob (right password, not in mirror.admins): 403.
    let r = login(node, &[("username", "alice"), ("password", "wrong")]);
    assert_eq!(r.status().as_u16(), 401);
    assert!(r
        .text()
        .unwrap_or_default()
        .contains("wrong user name or password"));
    let r = login(node, &[("username", "bob"), ("password", "bob-pw")]);
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().unwrap_or_default().contains("bob is not an admin"));
    // A form sent from another site is refused, whatever it carries.
    let r = client()
        .post(format!("{}/admin/login", node.base_url()))
        .header("Origin", "https://evil.example")
        .form(&[("username", "alice"), ("password", "alice-pw")])
        .send()
        .expect("login");
    assert_eq!(r.status().as_u16(), 403);

    // bob's own git session does not open the page either: 403.
    let r = client()
        .get(format!(
            "{}/info/refs?service=git-upload-pack",
            node.http_url("PROJ", "a")
        ))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .expect("info/refs");
    assert_eq!(r.status().as_u16(), 200);
    let bobs = session_cookie(&r);
    assert_eq!(get_admin(node, Some(&bobs), None).0, 403);

    // alice logs in: a session cookie and the page with every section.
    let r = login(node, &[("username", "alice"), ("password", "alice-pw")]);
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/admin");
    let cookie = session_cookie(&r);
    let (status, page) = get_admin(node, Some(&cookie), None);
    assert_eq!(status, 200, "{page}");
    let doc = node.status();
    for needle in [
        "id=authorize",
        "id=members",
        "id=load-balancers",
        "id=repositories",
        doc["farmId"].as_str().expect("farmId"),
        doc["publicKey"].as_str().expect("publicKey"),
        "<code>PROJ/a</code>",
        "<code>PROJ/b</code>",
        ", took ",
        "alice",
        "Lag behind the upstream",
        " KiB</td>",
    ] {
        assert!(page.contains(needle), "the page lacks {needle:?}");
    }
    // Each repository's size on disk and its lag (none: the last sync confirmed it).
    let a = node.repo_status("PROJ", "a").expect("PROJ/a");
    assert!(a["sizeBytes"].as_u64().is_some_and(|b| b > 1000), "{a}");
    assert_eq!(a["lagMs"], 0, "{a}");
    let csrf = csrf_of(&page);

    // Sync now: refused without the token and with another's, done with it.
    let before = last_sync(node, "a");
    for fields in [
        vec![("project", "PROJ"), ("repo", "a")],
        vec![("project", "PROJ"), ("repo", "a"), ("csrf", "AAAA")],
    ] {
        let r = sync_form(node, Some(&cookie), &fields);
        assert_eq!(r.status().as_u16(), 403, "{fields:?}");
    }
    assert_eq!(last_sync(node, "a"), before, "a refused form does nothing");
    let r = sync_form(
        node,
        Some(&cookie),
        &[("project", "PROJ"), ("repo", "a"), ("csrf", &csrf)],
    );
    assert_eq!(r.status().as_u16(), 303);
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(to.starts_with("/admin?done="), "{to}");
    wait_for("PROJ/a to sync again", LIMIT, || {
        (last_sync(node, "a") != before).then_some(())
    });
    // A repository not mirrored: 404, nothing done.
    let r = sync_form(
        node,
        Some(&cookie),
        &[("project", "PROJ"), ("repo", "nope"), ("csrf", &csrf)],
    );
    assert_eq!(r.status().as_u16(), 404);

    // The admin token: the page and the actions for scripts, no CSRF token (no cookie).
    assert_eq!(get_admin(node, None, Some(TOKEN)).0, 200);
    assert_eq!(
        get_admin(node, None, Some("not-the-token-0123456789")).0,
        401
    );
    let r = client()
        .post(format!("{}/admin/sync", node.base_url()))
        .bearer_auth(TOKEN)
        .form(&[("project", "PROJ"), ("repo", "b")])
        .send()
        .expect("sync with the token");
    assert_eq!(r.status().as_u16(), 303);
    // The token in the login form makes a session too.
    let r = login(node, &[("token", TOKEN)]);
    assert_eq!(r.status().as_u16(), 303);
    let token_cookie = session_cookie(&r);
    assert_eq!(get_admin(node, Some(&token_cookie), None).0, 200);
    assert_eq!(
        login(node, &[("token", "wrong-token-0123456789")])
            .status()
            .as_u16(),
        401
    );

    // Logout needs the token too; then the session opens nothing.
    let logout = |fields: &[(&str, &str)]| {
        client()
            .post(format!("{}/admin/logout", node.base_url()))
            .header("Cookie", &cookie)
            .form(fields)
            .send()
            .expect("logout")
            .status()
            .as_u16()
    };
    assert_eq!(logout(&[]), 403);
    assert_eq!(get_admin(node, Some(&cookie), None).0, 200);
    assert_eq!(logout(&[("csrf", &csrf)]), 303);
    assert_eq!(get_admin(node, Some(&cookie), None).0, 401);
    // The plots (a point a second here): git requests show on the requests plot. Three made
    // back to back usually fall on one point; when a point's edge splits them, three more.
    let three_requests = || {
        for _ in 0..3 {
            let r = client()
                .get(format!(
                    "{}/info/refs?service=git-upload-pack",
                    node.http_url("PROJ", "a")
                ))
                .basic_auth("alice", Some("alice-pw"))
                .send()
                .expect("info/refs");
            assert_eq!(r.status().as_u16(), 200);
        }
    };
    three_requests();
    let mut last_try = std::time::Instant::now();
    wait_for("the requests on the plot", LIMIT, || {
        let (_, page) = get_admin(node, None, Some(TOKEN));
        let needle = "id=plot-requests role=img aria-label=\"";
        let at = page.find(needle)? + needle.len();
        let label = page[at..].split('"').next()?;
        let most: u64 = label
            .rsplit("at most ")
            .next()?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        if most < 3 && last_try.elapsed() >= std::time::Duration::from_secs(3) {
            three_requests();
            last_try = std::time::Instant::now();
        }
        (most >= 3).then_some(())
    });

    // Five wrong passwords hold carol's logins, even with the right one; alice is not held.
    for _ in 0..5 {
        let r = login(node, &[("username", "carol"), ("password", "guess")]);
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = login(node, &[("username", "carol"), ("password", "carol-pw")]);
    assert_eq!(r.status().as_u16(), 429);
    let r = login(node, &[("username", "alice"), ("password", "alice-pw")]);
    assert_eq!(r.status().as_u16(), 303);
    // The page's headers: never cached, never framed, scripts from the node alone.
    let r = client()
        .get(format!("{}/admin", node.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .expect("GET /admin");
    let h = r.headers();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-security-policy"]
        .to_str()
        .expect("csp")
        .contains("script-src 'self'"));
}

/// A node over a `file://` upstream holding P/r, Q/s and Q/t (the upstream lists its projects),
/// mirroring P/r by its properties file.
fn listing_setup() -> Setup {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.create("Q", "s", &Shape::small());
    up.create("Q", "t", &Shape::small());
    let http = HttpUpstream::start(
        &up.root(),
        &[("alice", "alice-pw")],
        &[
            ("P/r", &["alice"]),
            ("Q/s", &["alice"]),
            ("Q/t", &["alice"]),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let node = Node::start(
        &up.file_url(),
        &format!(
            "mirror.repos=P/r\nmirror.access=authenticated\nmirror.admins=alice\n\
             mirror.admin.tokenFile={}\n{}",
            token_file.display(),
            http.properties()
        ),
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    Setup {
        _up: up,
        _http: http,
        _dir: dir,
        node,
    }
}

/// The `seen` value the page's forms carry (which selection they change).
fn seen_of(node: &Node) -> String {
    let page = client()
        .get(format!("{}/admin", node.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .expect("GET /admin")
        .text()
        .expect("page");
    let at = page.find("name=seen value=\"").expect("a seen field") + 17;
    page[at..].split('"').next().expect("seen").to_owned()
}

/// Posts a change of the selection as the page would (with what it shows as `seen`).
fn change(node: &Node, fields: &[(&str, &str)]) -> u16 {
    let seen = seen_of(node);
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    all.push(("seen", &seen));
    client()
        .post(format!("{}/admin/projects", node.base_url()))
        .bearer_auth(TOKEN)
        .form(&all)
        .send()
        .expect("POST /admin/projects")
        .status()
        .as_u16()
}

fn served(node: &Node, project: &str, repo: &str) -> bool {
    node.repo_status(project, repo)
        .is_some_and(|r| r["state"] == "SYNCHRONIZED")
}

#[test]
fn the_selection_written_on_the_page_wins_over_the_file_survives_a_restart_and_goes_back() {
    let mut s = listing_setup();
    let node = &s.node;
    assert_eq!(node.status()["selection"]["source"], "file");

    // The search works without a script: the upstream's projects, each with its button.
    let page = client()
        .get(format!("{}/admin?pq=q", node.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .expect("GET /admin")
        .text()
        .expect("page");
    assert!(page.contains("Add Q") && !page.contains("Add P"), "{page}");
    let json: serde_json::Value = client()
        .get(format!("{}/admin/projects.json?pq=Q", node.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .expect("GET projects.json")
        .json()
        .expect("JSON");
    assert_eq!(json["values"][0]["key"], "Q", "{json}");
    assert_eq!(json["values"].as_array().map(Vec::len), Some(1), "{json}");

    // A session's form without its CSRF token changes nothing.
    let r = login(node, &[("username", "alice"), ("password", "alice-pw")]);
    let cookie = session_cookie(&r);
    let r = client()
        .post(format!("{}/admin/projects", node.base_url()))
        .header("Cookie", &cookie)
        .form(&[("action", "add"), ("key", "Q")])
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(node.status()["selection"]["source"], "file");

    // Bad names are refused with a clear answer.
    assert_eq!(change(node, &[("action", "add"), ("key", "bad key!")]), 400);
    assert_eq!(
        change(node, &[("action", "add-repo"), ("repo", "no-slash")]),
        400
    );
    assert_eq!(change(node, &[("action", "explode")]), 400);

    // Add Q: its repositories are mirrored without a restart.
    assert_eq!(change(node, &[("action", "add"), ("key", "Q")]), 303);
    wait_for("Q's repositories to be served", LIMIT, || {
        (served(node, "Q", "s") && served(node, "Q", "t")).then_some(())
    });
    let sel = node.status()["selection"].clone();
    assert_eq!(sel["source"], "page", "{sel}");
    assert_eq!(sel["projects"], serde_json::json!(["Q"]), "{sel}");
    assert_eq!(sel["writtenBy"], "admin-token", "{sel}");
    assert!(
        served(node, "P", "r"),
        "P/r (mirror.repos of the file) stays"
    );
    // A form showing a selection replaced since is refused: nothing is lost to a stale tab.
    let r = client()
        .post(format!("{}/admin/projects", node.base_url()))
        .bearer_auth(TOKEN)
        .form(&[("action", "remove"), ("key", "Q"), ("seen", "")])
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 400);
    assert!(r
        .text()
        .unwrap_or_default()
        .contains("changed since the page showed it"));
    assert!(served(node, "Q", "s"));
    // While every project is mirrored, one project cannot be added or removed (that would
    // silently narrow the selection to it).
    assert_eq!(change(node, &[("action", "all")]), 303);
    assert_eq!(
        node.status()["selection"]["projects"],
        serde_json::json!(["*"])
    );
    assert_eq!(change(node, &[("action", "remove"), ("key", "Q")]), 400);
    assert_eq!(
        node.status()["selection"]["projects"],
        serde_json::json!(["*"])
    );
    assert_eq!(change(node, &[("action", "none")]), 303);
    assert_eq!(change(node, &[("action", "add"), ("key", "Q")]), 303);
    assert_eq!(
        node.status()["selection"]["projects"],
        serde_json::json!(["Q"])
    );
    wait_for("Q served again", LIMIT, || {
        served(node, "Q", "s").then_some(())
    });

    // A restart keeps it (the store has it).
    assert_eq!(s.node.stop(), Some(0));
    s.node.spawn();
    let node = &s.node;
    node.wait_state("SYNCHRONIZED", LIMIT);
    assert!(served(node, "Q", "s"), "{}", node.explain(20));
    assert_eq!(node.status()["selection"]["source"], "page");

    // Single repositories: P/r removed, Q/t stays with its project.
    assert_eq!(
        change(node, &[("action", "remove-repo"), ("repo", "P/r")]),
        303
    );
    wait_for("P/r to go", LIMIT, || {
        node.repo_status("P", "r").is_none().then_some(())
    });

    // Back to the file's selection: P/r again, Q gone.
    assert_eq!(change(node, &[("action", "file")]), 303);
    wait_for("the file's selection again", LIMIT, || {
        (served(node, "P", "r") && node.repo_status("Q", "s").is_none()).then_some(())
    });
    assert_eq!(node.status()["selection"]["source"], "file");
}
