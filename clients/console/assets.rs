//! The console's built files, compiled into the binaries that serve them: `s3kv console` (crates/s3kv-cli) and
//! s3kv-local's `/console`, each including this one file (`#[path]`), so both serve the same bytes and neither
//! needs Node to build or run. `dist/` is tsc's output of `src/` and is committed; `.ci/run` rebuilds it and fails
//! when it differs. `static/` holds what tsc does not produce. A new module in `src/` needs its line here (the CLI's
//! console tests check that every file of `dist/` is listed).

/// One file of the app: its name under `/console/`, its content type, its bytes.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! js {
    ($name:literal) => {
        Asset {
            name: $name,
            content_type: JS,
            body: include_str!(concat!("dist/", $name)),
        }
    };
}

pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("static/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("static/app.css"),
    },
    js!("api.js"),
    js!("app.js"),
    js!("diff.js"),
    js!("diffview.js"),
    js!("dom.js"),
    js!("history.js"),
    js!("item.js"),
    js!("json.js"),
    js!("live.js"),
    js!("transfer.js"),
    js!("tree.js"),
    js!("ui.js"),
];

/// The file for a path under `/console/` (`""` is the page itself).
pub fn find(name: &str) -> Option<&'static Asset> {
    let name = if name.is_empty() { "index.html" } else { name };
    ASSETS.iter().find(|asset| asset.name == name)
}

/// The headers every answer of the console carries, whoever serves it: the page runs only its own scripts, talks
/// only to its own origin, cannot be framed (no clickjacking of a Save or Restore button), and leaks no URL.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' blob: data:; \
         form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];
