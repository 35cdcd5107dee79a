//! The harness of the real-browser tests (`tests/it/browser.rs`, `tests/it/push_browser.rs`): Chromium,
//! chromedriver and the Python with selenium from `scripts/test`'s variables, a page server on an origin of its
//! own, and a selenium script from `tests/browser/` run against both (its side is `tests/browser/common.py`).
//! [`child`] and [`finish`] run any program a test drives (schemathesis too): nothing proxied, a deadline, and
//! its whole process group killed afterwards.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// Chromium, chromedriver and the Python with selenium: from `scripts/test`'s variables, or where it puts them.
pub struct Tools {
    pub chromium: String,
    pub chromedriver: String,
    pub python: String,
}

/// The [`Tools`]; fails, saying to run `scripts/test`, when one is missing.
pub fn tools() -> Tools {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let find = |env: &str, default: PathBuf| {
        let path = std::env::var(env)
            .ok()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or(default);
        assert!(
            path.is_file(),
            "{} is missing ({env}): run scripts/test, which installs Debian's chromium and chromium-driver and \
             selenium (into .venv) and exports their paths",
            path.display()
        );
        path.to_string_lossy().into_owned()
    };
    Tools {
        chromium: find("S3KV_CHROMIUM", "/usr/bin/chromium".into()),
        chromedriver: find("S3KV_CHROMEDRIVER", "/usr/bin/chromedriver".into()),
        python: find("S3KV_BROWSER_PYTHON", manifest.join(".venv/bin/python")),
    }
}

/// The page's origin, bound before the local stack starts (its CORS origin names it) and served after.
pub struct PageOrigin {
    listener: tokio::net::TcpListener,
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
}

/// An answer of the page server: status, content type, body.
pub type PageAnswer = (StatusCode, &'static str, Bytes);

impl PageOrigin {
    pub async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the page's port");
        let origin = format!("http://{}", listener.local_addr().unwrap());
        Self { listener, origin }
    }

    /// Serves `answer(method, path)` for every request, never cached, until the returned server is dropped.
    pub fn serve<F, A>(self, answer: F) -> PageServer
    where
        F: Fn(Method, String) -> A + Send + Sync + 'static,
        A: Future<Output = PageAnswer> + Send + 'static,
    {
        let answer = Arc::new(answer);
        let listener = self.listener;
        PageServer(tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        let answer =
                            answer(request.method().clone(), request.uri().path().to_owned());
                        async move {
                            let (status, content_type, body) = answer.await;
                            http::Response::builder()
                                .status(status)
                                .header("content-type", content_type)
                                .header("cache-control", "no-store")
                                .body(Full::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        }))
    }
}

/// The page server; stops when dropped.
pub struct PageServer(tokio::task::JoinHandle<()>);

impl Drop for PageServer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A selenium script of `tests/browser/`, given a fresh Chromium profile.
pub struct BrowserScript {
    script: PathBuf,
    tools: Tools,
    profile: PathBuf,
    driver_log: PathBuf,
}

impl BrowserScript {
    /// `tests/browser/<file>`, with a profile named after `label`; fails here, plainly, when a tool is missing.
    pub fn new(file: &str, label: &str) -> Self {
        let tools = tools();
        let profile = testkit::temp_dir(label);
        Self {
            script: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/browser")
                .join(file),
            tools,
            driver_log: profile.with_extension("chromedriver.log"),
            profile,
        }
    }

    /// Runs the script on the page at `origin` with its one argument: `config` (a JSON object) and what every
    /// script needs (`chromium`, `chromedriver`, `profile_dir`, `driver_log`, `page`), in its own process group,
    /// killed after `limit` at the latest. Prints the browser's log, whatever the outcome. `Err` holds the checks
    /// that failed in the browser (exit 1); a browser that could not be driven at all fails the test here, with
    /// the end of chromedriver's log.
    pub async fn run(
        self,
        origin: &str,
        config: serde_json::Value,
        limit: Duration,
    ) -> Result<(), String> {
        let mut argument = serde_json::json!({
            "chromium": self.tools.chromium,
            "chromedriver": self.tools.chromedriver,
            "profile_dir": self.profile,
            "driver_log": self.driver_log,
            "page": format!("{origin}/"),
        });
        let serde_json::Value::Object(config) = config else {
            panic!("the script's config is a JSON object: {config}")
        };
        argument.as_object_mut().unwrap().extend(config);
        let mut command = child(&self.tools.python);
        command.arg(&self.script).arg(argument.to_string());
        let (status, log) = finish(command, limit).await;
        let driver_lines = std::fs::read_to_string(&self.driver_log).unwrap_or_default();
        let driver_lines: Vec<&str> = driver_lines.lines().collect();
        let driver_tail = driver_lines[driver_lines.len().saturating_sub(40)..].join("\n");
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(&self.driver_log);
        // What the page saw, step by step.
        println!("--- the browser ({}):\n{log}---", self.script.display());
        match status.code() {
            Some(0) => Ok(()),
            Some(1) => Err(format!(
                "in the browser (its log is above):\n{}",
                log.lines()
                    .filter(|l| l.starts_with("FAIL"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
            _ => panic!(
                "the browser could not be driven ({status}); run scripts/test if something is missing:\n{log}\n\
                 chromedriver's log (end):\n{driver_tail}"
            ),
        }
    }
}

/// Runs `npm ARGS` in `dir`, failing the test when it cannot run or fails.
pub fn npm(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("npm")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run npm ({e}): these tests need Node 20 and npm"));
    assert!(status.success(), "npm {args:?} in {} failed", dir.display());
}

/// `npm ci` in `dir` unless its `node_modules` was installed from the lock as it is now
/// (`node_modules/.installed-lock` records the lock it came from, as scripts/lint-openapi does).
pub fn npm_ci(dir: &Path) {
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.installed-lock");
    if std::fs::read(&lock).ok() != std::fs::read(&installed).ok() {
        npm(
            dir,
            &[
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ],
        );
        std::fs::copy(&lock, &installed).expect("record the installed lock");
    }
}

/// A program for a test to run: no stdin, its output collected, and no proxy (everything it talks to is on
/// 127.0.0.1). Run it with [`finish`].
pub fn child(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: everything it starts (chromedriver, Chromium) is killed with it, whatever happens.
        .process_group(0)
        .kill_on_drop(true);
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(proxy);
    }
    command
}

/// Runs a [`child`] to its end, `limit` at the latest, then kills its process group: its exit status and its
/// output (stdout, then stderr).
pub async fn finish(mut command: tokio::process::Command, limit: Duration) -> (ExitStatus, String) {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let group = child.id().expect("the child's pid");
    let output = tokio::time::timeout(limit, child.wait_with_output()).await;
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    let output = output
        .unwrap_or_else(|_| {
            panic!(
                "{program} did not finish within {} s (killed)",
                limit.as_secs()
            )
        })
        .unwrap_or_else(|e| panic!("the output of {program}: {e}"));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, log)
}
