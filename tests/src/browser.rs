//! A headless Chromium driven through ChromeDriver's WebDriver HTTP API (Debian's `chromium` and
//! `chromium-driver`): pages open, forms filled, buttons clicked, page text read and screenshots
//! saved as test artifacts (under `target/test-artifacts/<test>/`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::{free_port, poll_every, wait_for};

/// The key WebDriver names an element by in its answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session: ChromeDriver and the Chromium it runs.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    artifacts: PathBuf,
    _profile: tempfile::TempDir,
}

/// An element on the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a headless Chromium that trusts any certificate (the LB's is
    /// self-signed); screenshots go to `target/test-artifacts/<name>/`.
    pub fn start(name: &str) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (install chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        wait_for("chromedriver to answer", Duration::from_secs(20), || {
            http.get(format!("{base}/status"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--window-size=1400,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .and_then(|r| r.json())
            .expect("new WebDriver session");
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/test-artifacts")
            .join(name);
        // This run's screenshots only.
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).expect("artifacts dir");
        Self {
            driver,
            base,
            session,
            http,
            artifacts,
            _profile: profile,
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut r = self.http.request(method.clone(), &url);
        if let Some(b) = &body {
            r = r.json(b);
        } else if method == reqwest::Method::POST {
            r = r.json(&json!({}));
        }
        let v: Value = r
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        if v["value"].get("error").is_some() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.script("return document.body ? document.body.innerText : '';")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` in the page; its return value.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The first element `css` selects, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let v: Value = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .and_then(|r| r.json())
            .ok()?;
        v["value"][ELEMENT]
            .as_str()
            .map(|id| Element(id.to_owned()))
    }

    /// The element `css` selects (panics naming it when there is none).
    pub fn element(&self, css: &str) -> Element {
        self.find(css)
            .unwrap_or_else(|| panic!("no element {css:?} on {}:\n{}", self.url(), self.text()))
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let Element(id) = self.element(css);
        self.call(reqwest::Method::POST, &format!("/element/{id}/clear"), None);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let Element(id) = self.element(css);
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), None);
    }

    /// Clicks the element `css` selects — a form's button — and waits for the page the form
    /// leads to (the click may return before the browser has navigated).
    pub fn submit(&self, css: &str) {
        self.script("window.__mirrorfarmOld = true; return 0;");
        self.click(css);
        let loaded = poll_every(Duration::from_secs(60), Duration::from_millis(50), || {
            let done = self.script(
                "return window.__mirrorfarmOld === undefined && document.readyState === 'complete';",
            );
            (done == Value::Bool(true)).then_some(())
        });
        assert!(
            loaded.is_some(),
            "the form behind {css:?} led to no new page (on {})",
            self.url()
        );
    }

    /// Waits until the page's text satisfies `holds`, reloading it every half second (the page
    /// has no live updates); returns the text.
    pub fn wait_text(
        &self,
        what: &str,
        limit: Duration,
        holds: impl FnMut(&str) -> bool,
    ) -> String {
        self.wait("body", what, limit, true, holds)
    }

    /// Like [`Self::wait_text`], on the text of the element `css` selects (empty when none).
    pub fn wait_part(
        &self,
        css: &str,
        what: &str,
        limit: Duration,
        holds: impl FnMut(&str) -> bool,
    ) -> String {
        self.wait(css, what, limit, true, holds)
    }

    /// Waits until the text of the element `css` selects satisfies `holds` as the page's script
    /// changes it (no reloads).
    pub fn wait_live(
        &self,
        css: &str,
        what: &str,
        limit: Duration,
        holds: impl FnMut(&str) -> bool,
    ) -> String {
        self.wait(css, what, limit, false, holds)
    }

    /// The text of the element `css` selects (empty when there is none).
    pub fn text_of(&self, css: &str) -> String {
        let script = format!(
            "var e = document.querySelector({}); return e ? e.innerText : '';",
            serde_json::to_string(css).unwrap_or_default()
        );
        self.script(&script).as_str().unwrap_or_default().to_owned()
    }

    fn wait(
        &self,
        css: &str,
        what: &str,
        limit: Duration,
        reload: bool,
        mut holds: impl FnMut(&str) -> bool,
    ) -> String {
        let mut first = true;
        let every = Duration::from_millis(if reload { 500 } else { 50 });
        let found = poll_every(limit, every, || {
            // The page has no live updates: a wait on the server's state reloads it.
            if reload && !first {
                self.call(reqwest::Method::POST, "/refresh", None);
            }
            first = false;
            let text = self.text_of(css);
            holds(&text).then_some(text)
        });
        found.unwrap_or_else(|| {
            let shot = self.screenshot("timeout");
            let loaded = self.script(
                "return performance.getEntriesByType('resource').map(e => e.name).join(' ');",
            );
            panic!(
                "timed out after {limit:?} waiting for {what} on {} (screenshot {}; console: \
                 {}; resources loaded: {loaded}); {css}:\n{}\npage:\n{}",
                self.url(),
                shot.display(),
                self.console(),
                self.text_of(css),
                self.text()
            )
        })
    }

    /// The browser console's messages so far (script errors, refused loads), one per line.
    pub fn console(&self) -> String {
        let url = format!("{}/session/{}/se/log", self.base, self.session);
        let v: Value = self
            .http
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default();
        v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["message"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Saves a screenshot as `NN-<label>.png` among the test's artifacts; its path.
    pub fn screenshot(&self, label: &str) -> PathBuf {
        let png = self.call(reqwest::Method::GET, "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        let n = std::fs::read_dir(&self.artifacts)
            .map(|d| d.count())
            .unwrap_or(0);
        let path = self.artifacts.join(format!("{n:02}-{label}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
