//! What counts as a stored document: one JSON value, validated without building it.
//!
//! Documents are stored and served byte-for-byte, so validation only has to prove the bytes parse. Parsing into
//! `IgnoredAny` allocates nothing and accepts numbers beyond f64 and duplicate object keys (both legal JSON). Two
//! checks come separately, because skipping with `IgnoredAny` does neither: UTF-8 (it does not validate skipped
//! strings), and depth (it skips nesting without limit). Past [`MAX_DEPTH`] levels, clients that parse
//! recursively, as most do, would overflow their stacks on what we serve.

use serde::de::IgnoredAny;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("the body is empty; send a JSON value such as {{}} or true")]
    Empty,
    #[error("the body is not valid JSON: {message} (line {line}, column {column})")]
    Malformed {
        message: String,
        line: usize,
        column: usize,
    },
}

/// Deepest nesting of arrays and objects accepted (serde_json's own default for typed parsing).
pub const MAX_DEPTH: usize = 128;

pub fn validate(bytes: &[u8]) -> Result<(), DocumentError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DocumentError::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        DocumentError::Malformed {
            message: "invalid UTF-8".to_owned(),
            line,
            column,
        }
    })?;
    check_depth(bytes)?;
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| {
            let full = e.to_string();
            // serde_json appends " at line L column C"; we report those as fields instead.
            let message = full.split(" at line ").next().unwrap_or(&full).to_owned();
            DocumentError::Malformed {
                message,
                line: e.line(),
                column: e.column(),
            }
        })
}

/// Fails at the first bracket that opens level `MAX_DEPTH + 1`, outside strings.
fn check_depth(bytes: &[u8]) -> Result<(), DocumentError> {
    // Nesting can only pass MAX_DEPTH with more than MAX_DEPTH opening brackets in the document (counting those in
    // strings too), and few documents have that many. Counting them is a vectorised pass; the exact scan below
    // goes a byte at a time, and took 2.8 of the 3.6 µs that validating a 4 KiB document cost (BENCHMARKS.md).
    let opening: usize = bytes
        .chunks(255)
        .map(|chunk| {
            // A u8 count cannot overflow in 255 bytes, and a u8 accumulator is what lets the compiler vectorise.
            let n = chunk
                .iter()
                .fold(0u8, |n, b| n + u8::from(*b == b'[' || *b == b'{'));
            usize::from(n)
        })
        .sum();
    if opening <= MAX_DEPTH {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped, mut line, mut line_start) =
        (0usize, false, false, 1, 0);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'\n' => (line, line_start) = (line + 1, i + 1),
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let message = format!("nested deeper than {MAX_DEPTH} levels");
                    return Err(DocumentError::Malformed {
                        message,
                        line,
                        column: i - line_start + 1,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_json_value() {
        for doc in [
            "{}",
            "[]",
            "true",
            "null",
            "1e400",
            "123456789012345678901234567890",
            r#"{"a":1,"a":2}"#,
            " \"x\" ",
        ] {
            assert_eq!(validate(doc.as_bytes()), Ok(()), "{doc}");
        }
    }

    #[test]
    fn empty_and_blank_bodies_are_empty() {
        assert_eq!(validate(b""), Err(DocumentError::Empty));
        assert_eq!(validate(b" \n\t"), Err(DocumentError::Empty));
    }

    #[test]
    fn malformed_reports_line_and_column() {
        let err = validate(b"{\n  \"a\": [1, 2 3]\n}").unwrap_err();
        match err {
            DocumentError::Malformed {
                line,
                column,
                message,
            } => {
                assert_eq!((line, column), (2, 14)); // the `3`
                assert!(message.contains("expected `,` or `]`"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = validate(b"{\"a\": \"\xC3\x28\"}").unwrap_err();
        assert_eq!(
            err,
            DocumentError::Malformed {
                message: "invalid UTF-8".into(),
                line: 1,
                column: 8
            }
        );
    }

    #[test]
    fn trailing_garbage_bom_and_bad_utf8_are_malformed() {
        for doc in [&b"{} x"[..], b"\xEF\xBB\xBF{}", b"\"\xFF\"", b"{\"a\":1"] {
            assert!(
                matches!(validate(doc), Err(DocumentError::Malformed { .. })),
                "{doc:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            validate(deep.as_bytes()),
            Err(DocumentError::Malformed { .. })
        ));
        let balanced = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let message = "nested deeper than 128 levels".to_owned();
        assert_eq!(
            validate(balanced.as_bytes()),
            Err(DocumentError::Malformed {
                message,
                line: 1,
                column: 129
            })
        );
    }

    #[test]
    fn the_depth_limit_is_exact_and_ignores_brackets_in_strings() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(validate(at_limit.as_bytes()), Ok(()));
        let in_strings = format!("[\"{}\", \"\\\"[[[\"]", "[{".repeat(500));
        assert_eq!(validate(in_strings.as_bytes()), Ok(()));
        // More brackets than the limit, but never deeper than it: the exact scan decides, not the count.
        let wide = format!("[{}[]]", "[],".repeat(MAX_DEPTH * 2));
        assert_eq!(validate(wide.as_bytes()), Ok(()));
        let over = format!("[{}]", at_limit);
        assert!(matches!(
            validate(over.as_bytes()),
            Err(DocumentError::Malformed { .. })
        ));
    }
}
