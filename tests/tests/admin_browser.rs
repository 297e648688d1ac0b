//! The admin page in a real browser (headless Chromium through ChromeDriver) against a real
//! 3-member farm behind the LB: log in with upstream credentials (a non-admin is refused), search
//! a project (type-ahead) and add it, see it synchronized on every member, remove it, sync a
//! repository now, see a member die and come back — each step asserted on the page and checked
//! against the members' `/status`. Screenshots: `target/test-artifacts/admin_browser/`.

use std::time::Duration;

use mirrorfarm_tests::browser::Browser;
use mirrorfarm_tests::farm::{following_lb, member_props, wait_synchronized_members};
use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::node::Node;
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, wait_for, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(90);

/// Whether `node` serves `id` (`PROJECT/repo`) synchronized.
fn serves(node: &Node, project: &str, repo: &str) -> bool {
    node.repo_status(project, repo)
        .is_some_and(|r| r["state"] == "SYNCHRONIZED")
}

/// The newest `lastSync` of P/r over the members.
fn newest_sync(nodes: &[Node]) -> String {
    nodes
        .iter()
        .filter_map(|n| n.repo_status("P", "r"))
        .filter_map(|r| r["lastSync"].as_str().map(str::to_owned))
        .max()
        .unwrap_or_default()
}

#[test]
fn an_admin_runs_the_farm_from_the_page_in_a_browser() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.create("Q", "s", &Shape::small());
    up.create("Q", "t", &Shape::small());
    let http = HttpUpstream::start(
        &up.root(),
        &[("alice", "alice-pw"), ("bob", "bob-pw")],
        &[
            ("P/r", &["alice", "bob"]),
            ("Q/s", &["alice"]),
            ("Q/t", &["alice"]),
        ],
    );
    let p0 = free_udp_port();
    let member = |port, seed| {
        let props = member_props(port, seed).replace("mirror.access=anonymous\n", "");
        Node::start(
            &up.file_url(),
            &format!(
                "{props}mirror.access=authenticated\nmirror.admins=alice\n{}",
                http.properties()
            ),
        )
    };
    let mut nodes = vec![member(p0, None)];
    for _ in 1..3 {
        nodes.push(member(free_udp_port(), Some(p0)));
    }
    wait_synchronized_members(&nodes, LIMIT);
    let lb = following_lb(p0);
    lb.wait_healthy(3, LIMIT);
    let admin = lb.https_url("P", "r").replace("/scm/P/r.git", "/admin");
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| n.status()["nodeId"].as_str().expect("nodeId").to_owned())
        .collect();

    let browser = Browser::start("admin_browser");
    // Not logged in: the login form, nothing of the farm.
    browser.open(&admin);
    let text = browser.text();
    assert!(text.contains("Log in"), "{text}");
    assert!(
        !text.contains("P/r"),
        "nothing of the farm before the login: {text}"
    );
    browser.screenshot("login");

    // bob is no admin: refused on the page.
    browser.type_into("#username", "bob");
    browser.type_into("#password", "bob-pw");
    browser.submit("form[action='/admin/login'] button[type=submit]");
    assert!(
        browser.text().contains("bob is not an admin"),
        "{}",
        browser.text()
    );

    // alice logs in: every member, the repository synchronized, the farm's key.
    browser.type_into("#username", "alice");
    browser.type_into("#password", "alice-pw");
    browser.submit("form[action='/admin/login'] button[type=submit]");
    browser.wait_part("#members", "the farm's three members", LIMIT, |t| {
        t.contains("Members (3)")
    });
    let text = browser.text();
    for id in &ids {
        assert!(
            text.contains(id.as_str()),
            "member {id} on the page:\n{text}"
        );
    }
    let doc = nodes[0].status();
    assert_eq!(doc["memberCount"], 3);
    // Each other member's gossip was heard within the last few seconds (a heartbeat a second).
    for m in doc["members"].as_array().expect("members") {
        let heard = m["lastGossipMs"].as_u64().expect("lastGossipMs");
        assert!(heard < 10_000, "{m}");
    }
    let members = browser.wait_part("#members", "last gossip ages", LIMIT, |t| {
        t.contains(" ago")
    });
    assert!(members.contains("Last gossip"), "{members}");
    assert!(
        text.contains(doc["farmId"].as_str().expect("farmId")),
        "{text}"
    );
    assert!(
        text.contains("P/r") && text.contains("SYNCHRONIZED"),
        "{text}"
    );
    assert!(serves(&nodes[0], "P", "r"));
    assert!(text.contains("From the properties file"), "{text}");
    // The load balancer, as it reported to the farm: its name and three backends in rotation.
    let lb_name = format!("localhost:{}", lb.https);
    browser.wait_part("#load-balancers", "the LB's report", LIMIT, |t| {
        t.contains(&lb_name) && t.matches("in rotation").count() == 3
    });
    assert!(!nodes[0].status()["loadBalancers"]
        .as_array()
        .expect("loadBalancers")
        .is_empty());
    assert!(
        browser.text_of("#plots").contains("The last hour"),
        "{}",
        browser.text_of("#plots")
    );
    browser.screenshot("farm");

    // Search the upstream's projects as one types; add Q.
    browser.type_into("#pq", "q");
    assert_eq!(
        browser.script("return document.getElementById('pq').value;"),
        "q"
    );
    browser.wait_live(
        "#project-results",
        "Q alone among the results as one types",
        LIMIT,
        |t| t.contains("Add Q") && !t.contains("Add P"),
    );
    browser.screenshot("search");
    browser.submit("#project-results form:has(input[name=key][value='Q']) button");
    let text = browser.text();
    assert!(text.contains("Now mirrored: projects Q"), "{text}");
    assert!(text.contains("Written on this page by alice"), "{text}");
    for n in &nodes {
        wait_or_explain(
            "every member to serve Q's repositories",
            LIMIT,
            || (serves(n, "Q", "s") && serves(n, "Q", "t") && serves(n, "P", "r")).then_some(()),
            || format!("{}\nselection: {}", n.explain(40), n.status()["selection"]),
        );
    }
    browser.wait_part(
        "#repositories",
        "Q's repositories on the page",
        LIMIT,
        |t| t.contains("Q/s") && t.contains("Q/t"),
    );
    browser.screenshot("project-added");

    // Remove it: gone from every member and from the page.
    browser.submit("#project-results form:has(input[name=key][value='Q']) button");
    assert!(
        browser.text().contains("Now mirrored: projects none"),
        "{}",
        browser.text()
    );
    // The type-ahead's forms name the selection the page showed too: one drawn now is taken
    // (and undone, with the page's own form).
    browser.type_into("#pq", "q");
    browser.wait_live("#project-results", "Add Q among the results", LIMIT, |t| {
        t.contains("Add Q") && !t.contains("Add P")
    });
    browser.submit("#project-results form:has(input[name=key][value='Q']) button");
    assert!(
        browser.text().contains("Now mirrored: projects Q"),
        "{}",
        browser.text()
    );
    browser.submit("#project-results form:has(input[name=key][value='Q']) button");
    assert!(
        browser.text().contains("Now mirrored: projects none"),
        "{}",
        browser.text()
    );
    for n in &nodes {
        wait_for("every member to stop serving Q", LIMIT, || {
            (n.repo_status("Q", "s").is_none() && n.repo_status("Q", "t").is_none()).then_some(())
        });
    }
    browser.wait_part("#repositories", "Q gone from the page", LIMIT, |t| {
        t.contains("P/r") && !t.contains("Q/s")
    });
    assert!(serves(&nodes[1], "P", "r"), "P/r stays");

    // Sync now: the page says so, and a member syncs P/r again.
    let before = newest_sync(&nodes);
    browser.submit("button[aria-label='Sync P/r now']");
    assert!(
        browser.text().contains("A sync of P/r was requested."),
        "{}",
        browser.text()
    );
    wait_for("a member to sync P/r again", LIMIT, || {
        (newest_sync(&nodes) > before).then_some(())
    });
    browser.screenshot("synced");

    // A member dies: the page (from whichever member answers) shows two; it comes back: three.
    nodes[2].kill9();
    let text = browser.wait_part("#members", "two members", LIMIT, |t| {
        t.contains("Members (2)") && !t.contains(ids[2].as_str())
    });
    assert!(
        text.contains(ids[0].as_str()) && text.contains(ids[1].as_str()),
        "{text}"
    );
    wait_for("member 1 to count two", LIMIT, || {
        (nodes[0].status()["memberCount"] == 2).then_some(())
    });
    browser.screenshot("member-down");
    nodes[2].spawn();
    wait_synchronized_members(&nodes, LIMIT);
    browser.wait_part("#members", "three members again", LIMIT, |t| {
        t.contains("Members (3)") && t.contains(ids[2].as_str())
    });
    assert!(browser.text().contains("alice"), "still logged in");
    // The restarted member took the farm's selection back (Q stays removed, written by alice).
    assert!(nodes[2].repo_status("Q", "s").is_none());
    browser.screenshot("member-back");
}
