//! Named profiles (endpoint, API key, and `watch`'s push endpoint) in the user's config directory, written by `s3kv configure`:
//! `<config dir>/s3kv/profiles.json` (`~/.config/s3kv/` on Linux; `S3KV_CONFIG_DIR` overrides the directory).
//! The file holds API keys, so it is created readable by its owner only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub endpoint: Option<String>,
    pub api_key: Option<String>,
    /// `watch`'s push endpoint (`configure --push-url`); absent from older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_url: Option<String>,
    /// The host push credentials name, when not the one derived from the push URL (`configure --push-host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_host: Option<String>,
}

pub fn dir() -> Option<PathBuf> {
    match std::env::var_os("S3KV_CONFIG_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => dirs::config_dir().map(|d| d.join("s3kv")),
    }
}

fn path() -> Option<PathBuf> {
    dir().map(|d| d.join("profiles.json"))
}

/// Every profile; none when the file does not exist.
pub fn load() -> Result<BTreeMap<String, Profile>, String> {
    let Some(path) = path() else {
        return Ok(BTreeMap::new());
    };
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: {e}; fix or delete the file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub fn save(name: &str, profile: Profile) -> Result<PathBuf, String> {
    let path = path().ok_or("no config directory on this system; set S3KV_CONFIG_DIR")?;
    let mut all = load()?;
    all.insert(name.to_owned(), profile);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
    // Whole or not at all, and owner-only whatever mode an older file had: a new file, then a rename.
    let partial = path.with_extension("json.partial");
    let _ = std::fs::remove_file(&partial);
    write_private(&partial, text.as_bytes())
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
