//! A stand-in for a forge's REST API (no forge runs on this machine). It answers the listing
//! endpoints the node calls with the shapes each forge documents: every object it returns is a
//! documented example from `tests/fixtures/forges/` (see its README for the URLs) with only the
//! names changed. What it lists is the real upstream's directory, read at each request: a
//! directory ending in `.git` is a repository, any other one a project (a GitLab group, whose
//! subdirectories may be subgroups). It pages with each forge's mechanism at a small page size,
//! checks the token in each forge's header, and logs every request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Which forge the stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bitbucket Data Center.
    Bitbucket,
    /// GitHub Enterprise Server.
    Github,
    /// GitLab.
    Gitlab,
    /// Gitea.
    Gitea,
}

impl Kind {
    /// `plugin.mirroring.upstream.type`'s value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bitbucket => "bitbucket",
            Kind::Github => "github",
            Kind::Gitlab => "gitlab",
            Kind::Gitea => "gitea",
        }
    }

    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Kind::Bitbucket => "",
            Kind::Github => "/api/v3",
            Kind::Gitlab => "/api/v4",
            Kind::Gitea => "/api/v1",
        }
    }
}

pub(crate) struct Inner {
    pub(crate) kind: Kind,
    root: PathBuf,
    pub(crate) token: String,
    pub(crate) page_size: usize,
    pub(crate) addr: SocketAddr,
    requests: Vec<String>,
    /// Answer the next API request 429 (then as usual).
    limit_next: bool,
    /// Requests refused for their token.
    unauthorized: usize,
    /// The forge's users, their SSH keys and what they may read.
    pub(crate) users: Vec<crate::forge_users::User>,
    /// Users' personal access tokens: (token, login).
    pub(crate) personal: Vec<(String, String)>,
}

/// A running stand-in; stops on drop.
pub struct ForgeStandin {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`: GitHub's `X-Hub-Signature-256` (and how
/// the farm signs its notices).
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
    m.update(body);
    let hex: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Reads a fixture (`tests/fixtures/forges/<path>`).
pub fn fixture(path: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/forges")
        .join(path);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub(crate) fn first(v: Value) -> Value {
    match v {
        Value::Array(mut a) => a.remove(0),
        Value::Object(mut o) => match o.remove("values") {
            Some(Value::Array(mut a)) => a.remove(0),
            _ => panic!("fixture has no values"),
        },
        _ => panic!("fixture is not a list"),
    }
}

impl ForgeStandin {
    /// Starts a stand-in for `kind` listing the upstream at `root`, expecting `token`, paging
    /// `page_size` items at a time.
    pub fn start(kind: Kind, root: &Path, token: &str, page_size: usize) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind stand-in");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Mutex::new(Inner {
            kind,
            root: root.to_owned(),
            token: token.to_owned(),
            page_size,
            addr,
            requests: Vec::new(),
            limit_next: false,
            unauthorized: 0,
            users: Vec::new(),
            personal: Vec::new(),
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(handle).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Self {
            inner,
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// The API root to configure (`plugin.mirroring.upstream.api.url`).
    pub fn api_url(&self) -> String {
        let kind = self.inner.lock().expect("lock").kind;
        format!("http://{}{}", self.addr, kind.prefix())
    }

    /// Properties of members that mirror project `P` listed by this (GitHub) stand-in and take its
    /// webhooks signed with `secret`, polling once an hour at most: the API token and the secret go
    /// in files in `dir`.
    pub fn webhook_member_props(&self, dir: &Path, secret: &str) -> String {
        let (token, hook) = (dir.join("api.token"), dir.join("hook.secret"));
        let expected = self.inner.lock().expect("lock").token.clone();
        std::fs::write(&token, expected).expect("write the API token");
        std::fs::write(&hook, secret).expect("write the webhook secret");
        format!(
            "mirror.projects=P\nplugin.mirroring.upstream.type=github\n\
             plugin.mirroring.upstream.api.url={}\nplugin.mirroring.upstream.api.tokenFile={}\n\
             mirror.webhook.secretFile={}\nplugin.mirroring.synchronization.interval=3600\n",
            self.api_url(),
            token.display(),
            hook.display()
        )
    }

    /// Every request so far (`METHOD path?query`).
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().expect("lock").requests.clone()
    }

    /// Adds a forge user with SSH key `key` (an OpenSSH line) who may read `reads`
    /// (`PROJECT/repo` each); its numeric ID follows the order of adding.
    pub fn add_user(&self, login: &str, key: &str, reads: &[&str]) {
        let mut s = self.inner.lock().expect("lock");
        let id = s.users.len() as u64 + 2;
        s.users.push(crate::forge_users::User {
            login: login.to_owned(),
            id,
            key: key.trim().to_owned(),
            reads: reads.iter().map(|r| (*r).to_owned()).collect(),
        });
    }

    /// Gives user `login` a personal access token `token`: `GET /user` with it names `login`.
    pub fn add_personal_token(&self, login: &str, token: &str) {
        let mut s = self.inner.lock().expect("lock");
        s.personal.push((token.to_owned(), login.to_owned()));
    }

    /// From now on, expects `token` instead.
    pub fn set_token(&self, token: &str) {
        self.inner.lock().expect("lock").token = token.to_owned();
    }

    /// How many requests were refused (401) for their token so far.
    pub fn unauthorized(&self) -> usize {
        self.inner.lock().expect("lock").unauthorized
    }

    /// Makes the next API request answer 429 as the forge would (then the ones after as usual).
    pub fn rate_limit_next(&self) {
        self.inner.lock().expect("lock").limit_next = true;
    }
}

impl Drop for ForgeStandin {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn query_num(query: &str, key: &str) -> Option<usize> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

pub(crate) fn decode(s: &str) -> String {
    s.replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%2B", "+")
        .replace("%2b", "+")
        .replace("%3D", "=")
        .replace("%3d", "=")
}

pub(crate) fn authorized(kind: Kind, headers: &HeaderMap, token: &str) -> bool {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    match kind {
        Kind::Bitbucket | Kind::Github => h("authorization") == format!("Bearer {token}"),
        Kind::Gitlab => h("private-token") == token,
        Kind::Gitea => h("authorization") == format!("token {token}"),
    }
}

async fn handle(State(state): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let mut s = state.lock().expect("lock");
    s.requests.push(format!("{} {path}?{query}", req.method()));
    if let Some(r) = crate::forge_users::own_user(&s, req.headers(), &path) {
        return r;
    }
    if !authorized(s.kind, req.headers(), &s.token) {
        s.unauthorized += 1;
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    if std::mem::take(&mut s.limit_next) {
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"message": "slow down"})),
        )
            .into_response();
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        r.headers_mut()
            .insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        return r;
    }
    let Some(rest) = path.strip_prefix(s.kind.prefix()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(r) = crate::forge_users::answer(&s, rest, &query) {
        return r;
    }
    let tree = crate::forge_listing::tree(&s.root);
    let answer = match s.kind {
        Kind::Bitbucket => crate::forge_listing::bitbucket(&tree, rest, &query, s.page_size),
        Kind::Github => crate::forge_listing::github(&tree, rest, &query, &s, &path),
        Kind::Gitlab => crate::forge_listing::gitlab(&tree, rest, &query, &s, &path),
        Kind::Gitea => crate::forge_listing::gitea(&tree, rest, &query, &s, &path),
    };
    match answer {
        Some(r) => r,
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response(),
    }
}

/// One page of `items` by `page` (1-based) with a `Link` to the next.
pub(crate) fn link_page(items: Vec<Value>, query: &str, s: &Inner, path: &str) -> Response {
    let page = query_num(query, "page").unwrap_or(1).max(1);
    let start = (page - 1) * s.page_size;
    let more = items.len() > start + s.page_size;
    let body: Vec<Value> = items.into_iter().skip(start).take(s.page_size).collect();
    let mut r = axum::Json(Value::Array(body)).into_response();
    if more {
        let others: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("page=") && !kv.is_empty())
            .collect();
        let mut q = others.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        let link = format!(
            "<http://{}{path}?{q}page={}>; rel=\"next\"",
            s.addr,
            page + 1
        );
        r.headers_mut()
            .insert("link", HeaderValue::from_str(&link).expect("link"));
    }
    r
}

/// One page of Bitbucket's paged shape.
pub(crate) fn bitbucket_page(items: Vec<Value>, query: &str, page_size: usize) -> Response {
    let start = query_num(query, "start").unwrap_or(0);
    let total = items.len();
    let values: Vec<Value> = items.into_iter().skip(start).take(page_size).collect();
    let last = start + values.len() >= total;
    let mut page = json!({"size": values.len(), "limit": page_size, "isLastPage": last, "values": values, "start": start});
    if !last {
        page["nextPageStart"] = json!(start + page_size);
    }
    axum::Json(page).into_response()
}
