//! A minimal W3C WebDriver client over reqwest, enough to drive headless
//! Chromium through chromedriver: navigate, find, type, click, read text,
//! take screenshots.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Chromium and chromedriver from PATH. In CI both must be there (.ci/run
/// installs them); elsewhere a missing one skips the browser test, said
/// aloud rather than passed.
pub fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        assert!(std::env::var_os("CI").is_none(), "CI is set but chromium or chromedriver is missing");
        eprintln!("SKIPPED browser test: install chromium and chromium-driver (apt) to run it");
        return None;
    };
    Some((chromium, chromedriver))
}

/// Where browser tests leave their screenshots.
pub fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

/// A chromedriver process on a free loopback port, killed on drop.
pub struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub async fn start(chromedriver: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/status", driver.base)).await {
                if r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true) {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a headless Chromium with its own throwaway profile.
    pub async fn browser(&self, chromium: &Path, profile: &Path) -> Browser {
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
                         "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1"],
            },
        }}});
        let v: Value =
            http.post(format!("{}/session", self.base)).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_owned();
        Browser { http, base: format!("{}/session/{id}", self.base) }
    }
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            return Err(v["value"].clone());
        }
        Ok(v["value"].clone())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body.clone()).await.unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    /// Runs `action` on the element `css`, finding it again when the page's
    /// live refresh replaced it in between (a stale element reference).
    async fn on_element(&self, css: &str, method: reqwest::Method, action: &str, body: Option<Value>) -> Value {
        for _ in 0..50 {
            let el = self.find(css, Duration::from_secs(5)).await;
            match self.try_call(method.clone(), &format!("/element/{el}/{action}"), body.clone()).await {
                Ok(v) => return v,
                Err(e) if e["error"] == "stale element reference" => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("webdriver {css} {action}: {e}"),
            }
        }
        panic!("element {css} kept going stale")
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    pub async fn set_size(&self, width: u32, height: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// Finds an element by CSS selector, waiting for it up to `within`.
    pub async fn find(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let v: Value = self
                .http
                .post(format!("{}/element", self.base))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css}: {}", v["value"]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, reqwest::Method::POST, "value", Some(json!({"text": text}))).await;
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, reqwest::Method::POST, "click", Some(json!({}))).await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.on_element(css, reqwest::Method::GET, "text", None).await.as_str().unwrap_or("").to_owned()
    }

    /// Waits until the element's text contains `want` (the page updates itself).
    pub async fn wait_text(&self, css: &str, want: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let got = self.text(css).await;
            if got.contains(want) {
                return got;
            }
            assert!(Instant::now() < deadline, "{css} shows {got:?}, expected {want:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Accepts the `confirm()` dialog a click opened (forms with
    /// `data-confirm`), waiting for it to appear.
    pub async fn accept_alert(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.try_call(reqwest::Method::POST, "/alert/accept", Some(json!({}))).await {
                Ok(_) => return,
                Err(e) if e["error"] == "no such alert" && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("webdriver accept alert: {e}"),
            }
        }
    }

    /// Saves a PNG screenshot of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}
