//! Just enough of the W3C WebDriver protocol to drive Debian's Chromium through its chromedriver from Rust: a
//! session on a fresh profile, navigation, elements found by CSS and clicked or typed into, scripts, screenshots.
//! Spoken over reqwest rather than through selenium, so the console's tests are one Rust file with no script beside
//! them. chromedriver runs in a process group of its own, killed with every browser it started when this is
//! dropped, whatever the test did.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The flags the repository's other browser tests use (tests/browser/common.py), plus a laptop-sized window.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--no-proxy-server",
    "--window-size=1280,960",
    "--force-device-scale-factor=1",
];
/// The W3C name of an element reference in a JSON answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long anything the console does in answer to a click may take before the test gives up and says what it
/// was waiting for (a deadline for failing, not a measurement).
const PATIENCE: Duration = Duration::from_secs(30);

/// Chromium and chromedriver: scripts/test's variables, else Debian's paths.
fn tool(env: &str, default: &str) -> String {
    let path = std::env::var(env)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| default.to_owned());
    assert!(
        Path::new(&path).is_file(),
        "{path} is missing ({env}): run scripts/test, which installs Debian's chromium and chromium-driver"
    );
    path
}

pub struct Browser {
    driver: tokio::process::Child,
    group: u32,
    http: reqwest::Client,
    session: String,
    base: String,
    profile: PathBuf,
}

impl Browser {
    pub async fn start(label: &str) -> Self {
        let chromium = tool("S3KV_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("S3KV_CHROMEDRIVER", "/usr/bin/chromedriver");
        let profile = testkit::temp_dir(&format!("console-browser-{label}"));
        let port = testkit::free_port();
        let mut command = tokio::process::Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.with_extension("chromedriver.log").display()
            ))
            .env("NO_PROXY", "*")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {chromedriver}: {e}"));
        let group = driver.id().expect("chromedriver's pid");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(answer) = ready {
                let status: Value = json_of(answer).await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "chromedriver did not start on {base}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = json_of(
            with_json(http.post(format!("{base}/session")), &capabilities)
                .send()
                .await
                .expect("chromedriver answers"),
        )
        .await
        .expect("a session as JSON");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        Self {
            driver,
            group,
            http,
            session,
            base,
            profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = with_json(request, &body);
        }
        let answer = json_of(
            request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!(
                "{method} {path}: {error}: {}",
                answer["value"]["message"].as_str().unwrap_or_default()
            );
        }
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and gives back what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Waits until `condition` (a JavaScript expression) is true in the page; fails saying `what` it waited for,
    /// with the page's error banner and status line.
    pub async fn wait(&self, condition: &str, what: &str) {
        let started = Instant::now();
        loop {
            let value = self
                .run(&format!("return !!({condition});"), json!([]))
                .await;
            if value == true {
                return;
            }
            if started.elapsed() > PATIENCE {
                let seen = self
                    .run(
                        "return [document.getElementById('error')?.hidden ? '' : document.getElementById('error-text')?.textContent, document.getElementById('status')?.textContent, document.getElementById('validation')?.textContent];",
                        json!([]),
                    )
                    .await;
                panic!("waited {PATIENCE:?} for {what} ({condition}); error banner, status, validation: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element `css` selects, once it exists.
    async fn element(&self, css: &str) -> String {
        self.wait(
            &format!("document.querySelector({})", json!(css)),
            &format!("{css} to exist"),
        )
        .await;
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {found}"))
            .to_owned()
    }

    /// Clicks `css` as a person would (WebDriver moves the pointer there: a hidden or covered element fails).
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into `css` key by key, after emptying it.
    pub async fn replace_text(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Types `text` into `css` as it is: for a file input, a path to pick (hidden inputs too, as chromedriver
    /// allows by default).
    pub async fn send_keys(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let value = self
            .run(
                "const e = document.querySelector(arguments[0]); return !e ? null : (e.tagName === 'INPUT' || e.tagName === 'TEXTAREA') ? e.value : e.textContent;",
                json!([css]),
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Emulates the operating system's dark scheme (`prefers-color-scheme: dark`), or light, through Chromium's
    /// DevTools protocol, which chromedriver passes on.
    pub async fn color_scheme(&self, scheme: &str) {
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": scheme}]
            }})),
        )
        .await;
    }

    /// A PNG of the window, into `dir/name` when screenshots were asked for (`S3KV_CONSOLE_SCREENSHOTS`).
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("S3KV_CONSOLE_SCREENSHOTS") else {
            return;
        };
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            data.as_str().expect("a screenshot"),
        )
        .expect("base64");
        let path = Path::new(&dir).join(name);
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// The page's console messages: printed when a test fails, for what the page itself said.
    pub async fn log(&self) -> String {
        let entries = with_json(
            self.http
                .post(format!("{}/session/{}/se/log", self.base, self.session)),
            &json!({"type": "browser"}),
        )
        .send()
        .await;
        match entries {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }
}

fn with_json(request: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    request
        .header("content-type", "application/json")
        .body(body.to_string())
}

async fn json_of(answer: reqwest::Response) -> Result<Value, String> {
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.group)])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.driver.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(self.profile.with_extension("chromedriver.log"));
    }
}
