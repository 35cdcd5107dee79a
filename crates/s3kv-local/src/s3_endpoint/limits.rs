//! Keys as s3s-fs stores them, one file per object, and what that rules out here that S3 itself allows. The
//! gateway asks the same questions before a write reaches the endpoint, so that the client gets a clear 4xx instead
//! of a file-system error it would retry.

use std::path::Path;

use s3s::{s3_error, S3Result};

/// Whether s3s-fs can store `key`: it keeps the object at `bucket/key` and its metadata in a file named after the
/// base64 of bucket and key (with an upload id during multipart uploads), and no file name may pass 255 bytes.
/// S3 itself takes keys of up to 1,024 bytes; this is a limit of the local stack only.
pub fn storable(bucket: &str, key: &str) -> bool {
    let base64 = |bytes: usize| (4 * bytes).div_ceil(3);
    const FIXED: usize = ".bucket-".len()
        + ".object-".len()
        + ".upload-00000000-0000-0000-0000-000000000000".len()
        + ".metadata.json".len();
    FIXED + base64(bucket.len()) + base64(key.len()) <= 255
        && key.split('/').all(|segment| segment.len() <= 255)
}

pub(super) fn check_storable(bucket: &str, key: &str) -> S3Result<()> {
    if storable(bucket, key) {
        return Ok(());
    }
    Err(s3_error!(
        KeyTooLongError,
        "s3kv-local keeps objects in files named after their keys, and this key is too long for the file system"
    ))
}

/// Why `key` cannot be stored beside the bucket's other keys, if it cannot. s3s-fs keeps `a/b` as the file `b`
/// in the directory `a`, so the key `a` and the keys under `a/` cannot both exist here, as they can in S3; a
/// write that would need both is refused with a message naming the key in the way, instead of failing on the
/// file system with an error that clients retry.
pub fn conflict(root: &Path, bucket: &str, key: &str) -> Option<String> {
    if key.ends_with('/') {
        return None;
    }
    let bucket_dir = root.join(bucket);
    if bucket_dir.join(key).is_dir() {
        return Some(format!(
            "s3kv-local keeps objects in files named after their keys, and keys under {key}/ exist, so {key} cannot (in S3 both can)"
        ));
    }
    let mut prefix = String::new();
    for segment in key.split('/').collect::<Vec<_>>().split_last()?.1 {
        prefix.push_str(segment);
        if bucket_dir.join(&prefix).is_file() {
            return Some(format!(
                "s3kv-local keeps objects in files named after their keys, and the object {prefix} exists, so no key under {prefix}/ can (in S3 both can)"
            ));
        }
        prefix.push('/');
    }
    None
}

pub(super) fn check_conflict(root: &Path, bucket: &str, key: &str) -> S3Result<()> {
    match conflict(root, bucket, key) {
        None => Ok(()),
        Some(reason) => Err(s3_error!(InvalidRequest, "{reason}")),
    }
}
