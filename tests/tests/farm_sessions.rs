//! Sessions replicated farm-wide (`hazelcast.http.sessions=replicated`, the default in a farm): a
//! session issued by one member works on every other member without credentials and without a
//! new upstream check, through the LB with `lb.sticky=false`, on a member that restarted and on
//! one that joined later; the session carried over to another member keeps its value; logging
//! out on one member ends it on all.

use std::time::Duration;

use mirrorfarm_tests::farm::{
    following_lb_with, gossip_port, member_props, ssh_farm_on, wait_synchronized_members,
};
use mirrorfarm_tests::http_upstream::HttpUpstream;
use mirrorfarm_tests::node::{Node, Placement};
use mirrorfarm_tests::upstream::{Shape, Upstream};
use mirrorfarm_tests::{free_udp_port, wait_or_explain};

const LIMIT: Duration = Duration::from_secs(90);
const ALICE: (&str, &str) = ("alice", "alice-pw");

/// Status and `Set-Cookie` of `info/refs` of P/r on `node`.
fn get(node: &Node, who: Option<(&str, &str)>, cookie: Option<&str>) -> (u16, Option<String>) {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut r = c.get(format!(
        "{}/info/refs?service=git-upload-pack",
        node.http_url("P", "r")
    ));
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    if let Some(c) = cookie {
        r = r.header("Cookie", c);
    }
    let resp = r.send().expect("GET");
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), set)
}

fn session_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("cookie").to_owned()
}

fn valid_on(node: &Node, cookie: &str, what: &str) {
    wait_or_explain(
        what,
        Duration::from_secs(10),
        || (get(node, None, Some(cookie)).0 == 200).then_some(()),
        || node.explain(30),
    );
}

#[test]
fn a_session_issued_by_one_member_works_on_every_member() {
    let mut up = Upstream::new();
    up.create("P", "r", &Shape::small());
    up.start_sshd();
    let http = HttpUpstream::start(&up.root(), &[ALICE], &[("P/r", &["alice"])]);
    let extra = format!("mirror.access=authenticated\n{}", http.properties());
    let mut nodes = ssh_farm_on(&up, 3, LIMIT, &extra, &Placement::default());

    // Member 1 checks alice's credentials and issues a session.
    let (status, set) = get(&nodes[0], Some(ALICE), None);
    assert_eq!(status, 200);
    let cookie = session_value(&set.expect("a session cookie"));
    let (random, route1) = cookie
        .trim_start_matches("BITBUCKETSESSIONID=")
        .split_once('.')
        .expect("route");
    let random = random.to_owned();
    let route1 = route1.to_owned();
    assert_eq!(get(&nodes[1], None, Some("BITBUCKETSESSIONID=00")).0, 401);
    let checks = http.checks();

    // Members 2 and 3 honour it with the cookie alone, without asking the upstream.
    for (i, n) in nodes.iter().enumerate().skip(1) {
        valid_on(n, &cookie, &format!("the session on member {}", i + 1));
    }
    assert_eq!(http.checks(), checks, "no member asked the upstream again");
    // Member 2 carries it over to itself: the same session, its own route.
    let (_, set) = get(&nodes[1], None, Some(&cookie));
    let moved = session_value(&set.expect("carried over with this member's route"));
    let (random2, route2) = moved
        .trim_start_matches("BITBUCKETSESSIONID=")
        .split_once('.')
        .expect("route");
    assert_eq!(random2, random, "the session value is kept");
    assert_ne!(route2, route1);

    // Through the LB with stickiness off, the cookie alone serves every request.
    let lb = following_lb_with(gossip_port(&nodes[0]), "lb.sticky=false\n");
    lb.wait_healthy(3, LIMIT);
    for _ in 0..9 {
        let out = lb.curl(
            "/scm/P/r.git/info/refs?service=git-upload-pack",
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Cookie: {cookie}"),
            ],
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    }

    // A member that restarts gets the farm's sessions back.
    assert_eq!(nodes[2].stop(), Some(0));
    nodes[2].spawn();
    wait_synchronized_members(&nodes, LIMIT);
    valid_on(&nodes[2], &cookie, "the session on the restarted member");

    // So does one that joins later.
    let base = member_props(free_udp_port(), Some(gossip_port(&nodes[0])))
        .replace("mirror.access=anonymous\n", "");
    let late = Node::start(&up.ssh_url(), &format!("{base}{extra}"));
    nodes.push(late);
    wait_synchronized_members(&nodes, LIMIT);
    valid_on(
        &nodes[3],
        &cookie,
        "the session on a member that joined later",
    );
    assert_eq!(http.checks(), checks, "still no new upstream check");

    // Logging out on one member ends the session on all.
    let r = reqwest::blocking::Client::new()
        .delete(format!(
            "http://127.0.0.1:{}/rest/mirroring/latest/session",
            nodes[1].http
        ))
        .header("Cookie", &cookie)
        .send()
        .expect("DELETE session");
    assert_eq!(r.status().as_u16(), 204);
    for (i, n) in nodes.iter().enumerate() {
        wait_or_explain(
            &format!("the session to end on member {}", i + 1),
            Duration::from_secs(10),
            || (get(n, None, Some(&cookie)).0 == 401).then_some(()),
            || n.explain(30),
        );
    }
}
