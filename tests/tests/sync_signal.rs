//! What a node tells about its flips, with polling set far beyond the tests (3600 s) so only the
//! syncs they trigger happen. The generation endpoint
//! (`/rest/mirroring/latest/repos/P/r/generation`): a plain GET agrees with /status; a long poll
//! (`?after=N&wait=S`) answers at once when the generation is already above `after`, answers the
//! same generation when its wait ends without a flip, and wakes at the flip (with a 60 s wait
//! and a client that gives up after 40 s, an answer can only be the flip's); unknown repositories
//! are 404, a bad query 400. Sync-complete notices (`mirror.notify.url`): a real HTTP listener
//! receives one per flip, POSTed as `sync_complete`, signed with the webhook secret
//! (`X-Hub-Signature-256` over the raw body), naming the generation and refs hash the node
//! serves and each changed ref with its before and after.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mirrorfarm_tests::farm::main_of;
use mirrorfarm_tests::forge_standin::hub_signature;
use mirrorfarm_tests::gitc;
use mirrorfarm_tests::node::{serving_p_r, Node};
use mirrorfarm_tests::upstream::{Shape, Upstream};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(90);
/// How long a client waits for an answer that should come at once (or after a 1 s wait).
const SHORT: Duration = Duration::from_secs(30);
/// How long a client waits for a long poll asking for 60 s: an answer within it is not the
/// wait's end.
const POLL_LIMIT: Duration = Duration::from_secs(40);
const SECRET: &str = "notice-secret-0123456789";

/// `…/rest/mirroring/latest/repos/<repo>/generation` on `node`.
fn generation_url(node: &Node, repo: &str) -> String {
    format!(
        "http://{}:{}/rest/mirroring/latest/repos/{repo}/generation",
        node.host().ip,
        node.http
    )
}

/// GETs `url` with a client that gives up after `limit`: the status and the body (JSON when it
/// is, else as a string), or why there was no answer.
fn get(url: &str, limit: Duration) -> Result<(u16, Value), String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(limit)
        .build()
        .expect("HTTP client");
    let r = client
        .get(url)
        .send()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().map_err(|e| format!("GET {url}: body: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// GETs `url` expecting an answer within [`SHORT`].
fn get_now(url: &str) -> (u16, Value) {
    get(url, SHORT).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn generation_long_poll_returns_when_the_flip_happens() {
    let (up, node) = serving_p_r("plugin.mirroring.synchronization.interval=3600\n");
    let url = generation_url(&node, "P/r");
    let (code, now) = get_now(&url);
    assert_eq!(code, 200, "{now}");
    let g = now["generation"].as_u64().expect("generation");
    assert!(g >= 1, "synchronized: a state is served ({now})");
    let st = node.repo_status("P", "r").expect("P/r on /status");
    assert_eq!(
        (&now["generation"], &now["refsHash"]),
        (&st["generation"], &st["refsHash"]),
        "the endpoint agrees with /status"
    );

    // Already above `after`: answered at once, not at the end of the 60 s wait (the client gives
    // up before that).
    let (code, at_once) = get(&format!("{url}?after={}&wait=60", g - 1), POLL_LIMIT)
        .unwrap_or_else(|e| panic!("a generation above `after` is answered at once: {e}"));
    assert_eq!((code, &at_once), (200, &now));

    // A long poll for the next generation, from another thread.
    let poll_url = format!("{url}?after={g}&wait=60");
    let poll = std::thread::spawn(move || get(&poll_url, POLL_LIMIT));
    // No flip: a short poll answers the same generation when its second is over (and gives the
    // long poll time to reach the node before the flip).
    let (code, same) = get_now(&format!("{url}?after={g}&wait=1"));
    assert_eq!((code, &same), (200, &now), "no flip: the same generation");
    assert!(
        !poll.is_finished(),
        "the long poll waits while nothing changes"
    );

    let pushed = up.commit("P", "r", "main", "wakes the long poll");
    assert_eq!(node.trigger(Some(("P", "r"))), 202);
    let (code, woke) = poll
        .join()
        .expect("the long poll's thread")
        .unwrap_or_else(|e| {
            panic!(
                "the long poll did not answer at the flip: {e}\n{}",
                node.explain(40)
            )
        });
    assert_eq!(code, 200, "{woke}");
    let g2 = woke["generation"].as_u64().expect("generation");
    assert!(
        g2 > g,
        "the long poll answered the flip's generation: {woke}"
    );
    let (_, plain) = get_now(&url);
    assert_eq!(woke, plain, "the long poll answered the state now served");
    assert_ne!(woke["refsHash"], now["refsHash"]);
    assert_eq!(
        main_of(&node).as_deref(),
        Some(pushed.as_str()),
        "when the long poll answers, the new state is served"
    );
    let (code, again) = get_now(&format!("{url}?after={g2}&wait=1"));
    assert_eq!((code, &again), (200, &plain), "no further flip");

    // Unknown repositories and bad queries.
    let unknown = generation_url(&node, "P/nope");
    assert_eq!(get_now(&unknown).0, 404);
    assert_eq!(get_now(&format!("{unknown}?after=0&wait=1")).0, 404);
    let (code, body) = get_now(&format!("{url}?after=x"));
    assert_eq!(code, 400, "{body}");
}

/// One request the receiver read.
#[derive(Debug)]
struct Delivery {
    /// `POST /hook HTTP/1.1`.
    request_line: String,
    /// Header names in lower case.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (headers, then a `Content-Length` body).
fn read_request(conn: &mut TcpStream) -> std::io::Result<Delivery> {
    use std::io::{Error, ErrorKind};
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 << 10 {
            return Err(Error::new(ErrorKind::InvalidData, "headers over 64 KiB"));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "closed before the headers ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("no Content-Length: {head}")))?;
    let mut body = buf.split_off(head_len);
    while body.len() < len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "closed before the body ended",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(Delivery {
        request_line,
        headers,
        body,
    })
}

/// A notice receiver: a plain HTTP/1.1 listener on 127.0.0.1 answering 200 to every request and
/// handing each over (or why it could not be read); stops on drop.
struct HookReceiver {
    port: u16,
    rx: mpsc::Receiver<Result<Delivery, String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HookReceiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let got = read_request(&mut conn).map_err(|e| e.to_string());
                if got.is_ok() {
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                if tx.send(got).is_err() {
                    break;
                }
            }
        });
        Self {
            port,
            rx,
            stop,
            thread: Some(thread),
        }
    }

    /// The next notice naming `generation` (earlier ones are passed over), with its parsed body.
    fn notice(&self, generation: u64, node: &Node) -> (Delivery, Value) {
        let deadline = Instant::now() + LIMIT;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(d)) => {
                    let v: Value = serde_json::from_slice(&d.body).unwrap_or_else(|e| {
                        panic!(
                            "a notice that is not JSON ({e}): {d:?} {}",
                            String::from_utf8_lossy(&d.body)
                        )
                    });
                    if v["generation"] == generation {
                        return (d, v);
                    }
                    others.push(v);
                }
                Ok(Err(e)) => panic!("the receiver could not read a request: {e}"),
                Err(_) => panic!(
                    "no notice of generation {generation} within {LIMIT:?}; got {others:?}\n{}",
                    node.explain(40)
                ),
            }
        }
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop, which sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A delivery is a notice: POSTed to the configured path as `sync_complete` JSON, signed over
/// its raw body with the secret; about P/r.
fn assert_signed_notice(d: &Delivery, notice: &Value) {
    assert_eq!(d.request_line, "POST /hook HTTP/1.1");
    let header = |name: &str| d.headers.get(name).map(String::as_str);
    assert_eq!(header("x-mirrorfarm-event"), Some("sync_complete"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(
        header("x-hub-signature-256"),
        Some(hub_signature(SECRET, &d.body).as_str()),
        "signed with the secret over the body as sent"
    );
    assert_eq!(
        (notice["project"].as_str(), notice["repo"].as_str()),
        (Some("P"), Some("r"))
    );
    assert_eq!(notice["changedRefsTruncated"], false);
}

/// `changedRefs` sorted by ref name.
fn changed_refs(notice: &Value) -> Vec<Value> {
    let mut refs = notice["changedRefs"]
        .as_array()
        .expect("changedRefs is a list")
        .clone();
    refs.sort_by(|a, b| a["ref"].as_str().cmp(&b["ref"].as_str()));
    refs
}

#[test]
fn sync_complete_notices_arrive_signed() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    let hook = HookReceiver::start();
    let secrets = tempfile::tempdir().expect("secrets");
    let secret_file = secrets.path().join("notify.secret");
    std::fs::write(&secret_file, SECRET).expect("write the secret");
    let node = Node::start(
        &up.file_url(),
        &format!(
            "mirror.repos=P/r\nmirror.access=anonymous\n\
             plugin.mirroring.synchronization.interval=3600\n\
             mirror.notify.url=http://127.0.0.1:{}/hook\nmirror.webhook.secretFile={}\n",
            hook.port,
            secret_file.display()
        ),
    );
    node.wait_state("SYNCHRONIZED", LIMIT);

    // The first sync is a flip too: its notice lists every upstream ref as created.
    let first = node.repo_status("P", "r").expect("P/r on /status");
    let g1 = first["generation"].as_u64().expect("generation");
    let (d, notice) = hook.notice(g1, &node);
    assert_signed_notice(&d, &notice);
    assert_eq!(notice["refsHash"], first["refsHash"]);
    let upstream = gitc::refs(&up.repo("P", "r"));
    let created: Vec<Value> = upstream
        .iter()
        .filter(|(name, _)| name.as_str() != "HEAD")
        .map(|(name, oid)| json!({"ref": name, "after": oid}))
        .collect();
    assert_eq!(changed_refs(&notice), created, "every ref created");

    // A commit upstream, synced: the notice of the new generation names main's move.
    let old = upstream
        .get("refs/heads/main")
        .cloned()
        .expect("main upstream");
    let pushed = up.commit("P", "r", "main", "announced by a notice");
    assert_eq!(node.trigger(Some(("P", "r"))), 202);
    let st = node.wait_generation("P", "r", g1 + 1, LIMIT);
    let g2 = st["generation"].as_u64().expect("generation");
    let (d, notice) = hook.notice(g2, &node);
    assert_signed_notice(&d, &notice);
    let (code, served) = get_now(&generation_url(&node, "P/r"));
    assert_eq!(code, 200, "{served}");
    assert_eq!(served["generation"], g2);
    assert_eq!(
        notice["refsHash"], served["refsHash"],
        "the notice names the state served"
    );
    assert_eq!(
        changed_refs(&notice),
        [json!({"ref": "refs/heads/main", "before": old, "after": pushed})],
        "only main moved"
    );
}

/// In authenticated mode the generation is read under the repository's rules: no credentials →
/// 401 asking for them (before anything is looked up); credentials the upstream cannot be asked
/// about → 503 (the same answers git gets).
#[test]
fn the_generation_is_read_under_the_repositorys_rules() {
    let up = Upstream::new();
    up.create("P", "r", &Shape::small());
    // Nothing listens at the auth URL: credentials cannot be checked.
    let node = Node::start(
        &up.file_url(),
        &format!(
            "mirror.repos=P/r\nplugin.mirroring.upstream.auth.url=http://127.0.0.1:{}/scm\n",
            mirrorfarm_tests::free_port()
        ),
    );
    node.wait_state("SYNCHRONIZED", LIMIT);
    let url = generation_url(&node, "P/r");
    let (status, _) = get_now(&url);
    assert_eq!(status, 401, "no credentials");
    let with_credentials = reqwest::blocking::Client::new()
        .get(&url)
        .basic_auth("alice", Some("secret"))
        .timeout(SHORT)
        .send()
        .expect("GET");
    assert_eq!(
        with_credentials.status().as_u16(),
        503,
        "the upstream cannot be asked"
    );
    assert_eq!(
        get_now(&generation_url(&node, "P/nope")).0,
        401,
        "nothing revealed without credentials"
    );
}
