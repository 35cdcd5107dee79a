//! What counts as a stored document: one JSON value, validated without building it.
//!
//! Documents are stored and served byte-for-byte, so validation only has to prove the bytes parse. Parsing into
//! `IgnoredAny` allocates nothing, accepts numbers beyond f64 and duplicate object keys (both legal JSON), and
//! inherits serde_json's recursion limit, so a body nested 100,000 deep is an error instead of a stack overflow.
//! UTF-8 is checked first and separately: skipping a string with `IgnoredAny` does not validate its bytes.

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
    }
}
