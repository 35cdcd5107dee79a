//! Binaries: the release and arm64 Lambda binaries the report lists, with their architecture, size and age.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::report::FileFact;
use crate::settings::{target_dir, workspace_dir};

pub(crate) fn elf_arch(path: &Path) -> String {
    use std::io::Read;
    let mut bytes = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        return "?".into();
    }
    if &bytes[..4] != b"\x7fELF" {
        return "not ELF".into();
    }
    match u16::from_le_bytes([bytes[18], bytes[19]]) {
        0x3e => "x86_64".into(),
        0xb7 => "aarch64 (arm64)".into(),
        other => format!("e_machine {other:#x}"),
    }
}

pub(crate) fn binaries() -> Vec<FileFact> {
    let target = target_dir();
    let mut paths: Vec<PathBuf> = ["reader", "writer", "syncer", "reconcile", "s3kv-local"]
        .iter()
        .map(|b| target.join("release").join(b))
        .collect();
    paths.extend(
        ["reader", "writer", "syncer", "reconcile"]
            .iter()
            .map(|b| target.join("lambda").join(b).join("bootstrap")),
    );
    paths
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            Some(FileFact {
                path: p
                    .strip_prefix(workspace_dir())
                    .unwrap_or(&p)
                    .display()
                    .to_string(),
                arch: elf_arch(&p),
                bytes: meta.len(),
                modified_unix: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or_default(),
            })
        })
        .collect()
}
