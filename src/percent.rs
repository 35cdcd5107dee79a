//! The two percent-encodings s3kv receives keys in.
//!
//! API Gateway REST APIs hand path parameters over still percent-encoded, where `+` is a literal plus.
//! S3 notifications encode object keys like an HTML form, where `+` is a space and a plus arrives as `%2B`.
//! Mixing the two up corrupts exactly the keys people notice (`a+b`, `my file`), so both live here, side by side.

use thiserror::Error;

/// Which encoding a string is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// RFC 3986 path segment: `%XX` escapes, `+` is itself.
    Path,
    /// `application/x-www-form-urlencoded`, as S3 event keys are: `%XX` escapes, `+` is a space.
    Form,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PercentError {
    #[error("'%' at byte {position} is not followed by two hex digits")]
    BadEscape { position: usize },
    #[error("the decoded bytes are not valid UTF-8")]
    NotUtf8,
}

/// Decodes `input`; fails on a stray `%` or on bytes that are not UTF-8 once decoded.
pub fn decode(input: &str, encoding: Encoding) -> Result<String, PercentError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or(PercentError::BadEscape { position: i })?;
                let value = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|_| hex.iter().all(u8::is_ascii_hexdigit))
                    .ok_or(PercentError::BadEscape { position: i })?;
                out.push(value);
                i += 3;
            }
            b'+' if encoding == Encoding::Form => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

/// Encodes an object key the way S3 writes it into event notifications (form encoding, `/` kept).
pub fn encode_form(input: &str) -> String {
    encode(input, Encoding::Form)
}

/// Encodes one path parameter value the way a client puts it in a URL (every byte but unreserved and `/`).
pub fn encode_path(input: &str) -> String {
    encode(input, Encoding::Path)
}

fn encode(input: &str, encoding: Encoding) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            b' ' if encoding == Encoding::Form => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_plus_is_space_and_escaped_plus_is_plus() {
        assert_eq!(
            decode("my+file%2Bv2.json", Encoding::Form).unwrap(),
            "my file+v2.json"
        );
    }

    #[test]
    fn path_plus_stays_plus() {
        assert_eq!(decode("a+b%20c", Encoding::Path).unwrap(), "a+b c");
    }

    #[test]
    fn unicode_is_decoded_from_utf8_escapes() {
        assert_eq!(
            decode("caf%C3%A9/%E2%9C%93", Encoding::Form).unwrap(),
            "café/✓"
        );
    }

    #[test]
    fn stray_percent_is_an_error_not_a_panic() {
        assert_eq!(
            decode("100%", Encoding::Path),
            Err(PercentError::BadEscape { position: 3 })
        );
        assert_eq!(
            decode("%G1", Encoding::Path),
            Err(PercentError::BadEscape { position: 0 })
        );
        assert_eq!(
            decode("%+1", Encoding::Form),
            Err(PercentError::BadEscape { position: 0 })
        );
        assert_eq!(
            decode("%é", Encoding::Path),
            Err(PercentError::BadEscape { position: 0 })
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(decode("%FF%FE", Encoding::Path), Err(PercentError::NotUtf8));
    }

    #[test]
    fn both_encodings_round_trip_awkward_keys() {
        for key in [
            "a b+c%d",
            "café/✓ x",
            "dir/sub dir/it's (1).json",
            "tab\there",
            "#?&=",
        ] {
            assert_eq!(decode(&encode_form(key), Encoding::Form).unwrap(), key);
            assert_eq!(decode(&encode_path(key), Encoding::Path).unwrap(), key);
        }
    }

    #[test]
    fn form_encoding_matches_what_s3_sends() {
        assert_eq!(encode_form("my file+v2.json"), "my+file%2Bv2.json");
    }
}
