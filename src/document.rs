//! What counts as a stored document: one JSON value, validated without building it.
//!
//! Documents are stored and served byte-for-byte, so validation only has to prove the bytes parse. Parsing into
//! `IgnoredAny` allocates nothing and accepts numbers beyond f64 (legal JSON, kept exactly as sent). Three checks
//! come separately, because skipping with `IgnoredAny` does none of them: UTF-8 (it does not validate skipped
//! strings), depth (it skips nesting without limit; past [`MAX_DEPTH`] levels, clients that parse recursively, as
//! most do, would overflow their stacks on what we serve), and duplicate member names.
//!
//! Duplicate names are refused because readers disagree on them: RFC 8259 leaves the meaning open, serde_json and
//! JavaScript keep the last value, others keep the first. A schema checks one reading, a consumer may use the
//! other, so `{"enabled":"yes","enabled":true}` would pass a schema demanding a boolean and still hand some
//! readers `"yes"`. I-JSON (RFC 7493) requires unique names; so do we. Lone surrogates (`"\ud800"`), which
//! I-JSON also forbids, stay accepted: every JSON parser reads them the same way, and refusing them now would make
//! stored items unreadable.

use std::borrow::Cow;
use std::collections::HashSet;

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
    #[error("the object member name {name:?} appears twice in one object (line {line}, column {column}); member names must be unique (I-JSON, RFC 7493)")]
    DuplicateName {
        name: String,
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
    serde_json::from_str::<IgnoredAny>(text).map_err(|e| {
        let full = e.to_string();
        // serde_json appends " at line L column C"; we report those as fields instead.
        let message = full.split(" at line ").next().unwrap_or(&full).to_owned();
        DocumentError::Malformed {
            message,
            line: e.line(),
            column: e.column(),
        }
    })?;
    check_names(bytes)
}

/// Line and column (1-based, in bytes) of the byte at `at`.
fn position(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = &bytes[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    (line, at - line_start + 1)
}

/// Fails at the first member name that repeats one already seen in the same object. `bytes` is valid JSON (the
/// parser said so), which is what lets this scan trust the structure: outside strings, a name is the string that
/// follows an object's `{` or one of its commas.
fn check_names(bytes: &[u8]) -> Result<(), DocumentError> {
    // No object has two members without two colons in the document; most scalars and arrays of scalars stop here.
    if bytes.iter().filter(|b| **b == b':').nth(1).is_none() {
        return Ok(());
    }
    // One entry per open container: the names seen so far for an object, `None` for an array.
    let mut open: Vec<Option<HashSet<Cow<'_, [u8]>>>> = Vec::new();
    let mut expect_name = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                open.push(Some(HashSet::new()));
                expect_name = true;
            }
            b'[' => {
                open.push(None);
                expect_name = false;
            }
            b'}' | b']' => {
                open.pop();
                expect_name = false;
            }
            b',' => expect_name = matches!(open.last(), Some(Some(_))),
            b'"' => {
                let start = i + 1;
                let mut end = start;
                while let Some(&b) = bytes.get(end).filter(|b| **b != b'"') {
                    // An escape is a backslash and at least one more byte, never a quote that ends the string.
                    end += if b == b'\\' { 2 } else { 1 };
                }
                let end = end.min(bytes.len());
                if expect_name {
                    let name = unescape(&bytes[start..end]);
                    if let Some(Some(seen)) = open.last_mut() {
                        if seen.contains(&name) {
                            let (line, column) = position(bytes, i);
                            return Err(DocumentError::DuplicateName {
                                name: String::from_utf8_lossy(&name).into_owned(),
                                line,
                                column,
                            });
                        }
                        seen.insert(name);
                    }
                    expect_name = false;
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// A JSON string's contents as the characters they stand for, so `"a"` and `"\u0061"` are one name. Surrogate
/// pairs become their character; a lone surrogate becomes its WTF-8 bytes, equal only to the same lone surrogate.
/// The input is a valid JSON string body, so every escape is complete.
fn unescape(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let hex = |at: usize| {
        raw.get(at..at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let escaped = raw.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        let code = match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => u32::from(b'\n'),
            b'r' => u32::from(b'\r'),
            b't' => u32::from(b'\t'),
            b'u' => {
                let Some(unit) = hex(i) else { break };
                i += 4;
                let low = (raw.get(i..i + 2) == Some(b"\\u".as_slice()))
                    .then(|| hex(i + 2))
                    .flatten()
                    .filter(|low| (0xDC00..0xE000).contains(low));
                match low {
                    Some(low) if (0xD800..0xDC00).contains(&unit) => {
                        i += 6;
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    _ => unit,
                }
            }
            other => u32::from(other),
        };
        push_wtf8(code, &mut out);
    }
    Cow::Owned(out)
}

/// UTF-8's encoding of `code`, extended to lone surrogates (WTF-8).
fn push_wtf8(code: u32, out: &mut Vec<u8>) {
    // The casts keep the low bits on purpose: each takes the six (or fewer) bits its byte carries.
    match code {
        0..=0x7F => out.push(code as u8),
        0x80..=0x7FF => out.extend([0xC0 | (code >> 6) as u8, 0x80 | (code & 0x3F) as u8]),
        0x800..=0xFFFF => out.extend([
            0xE0 | (code >> 12) as u8,
            0x80 | ((code >> 6) & 0x3F) as u8,
            0x80 | (code & 0x3F) as u8,
        ]),
        _ => out.extend([
            0xF0 | (code >> 18) as u8,
            0x80 | ((code >> 12) & 0x3F) as u8,
            0x80 | ((code >> 6) & 0x3F) as u8,
            0x80 | (code & 0x3F) as u8,
        ]),
    }
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
            r#"{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}"#,
            r#"{"\ud800":1,"\udc00":2,"\ud800\udc00":3,"a\"":4,"a":5}"#,
            r#"["a","a",{"a":"a","b":"a"}]"#,
            "\"\\udc00\"",
            " \"x\" ",
        ] {
            assert_eq!(validate(doc.as_bytes()), Ok(()), "{doc}");
        }
    }

    #[test]
    fn a_name_twice_in_one_object_is_refused_however_it_is_spelled() {
        for (doc, name, column) in [
            (r#"{"enabled":"yes","enabled":true}"#, "enabled", 18),
            (r#"{"a":1,"\u0061":2}"#, "a", 8),
            (r#"{"x":{"😀":1,"\ud83d\ude00":2}}"#, "😀", 16),
            (r#"[1,{"k":{},"k":[]}]"#, "k", 12),
            (r#"{"a":{"b":1},"c":2,"a":3}"#, "a", 20),
            (r#"{"\n":1,"\u000a":2}"#, "\n", 9),
        ] {
            assert_eq!(
                validate(doc.as_bytes()),
                Err(DocumentError::DuplicateName {
                    name: name.to_owned(),
                    line: 1,
                    column
                }),
                "{doc}"
            );
        }
        let lone = validate(br#"{"\ud800":1,"\ud800":2}"#).unwrap_err();
        assert!(
            matches!(lone, DocumentError::DuplicateName { .. }),
            "{lone:?}"
        );
        let spread = validate(b"{\n  \"a\": 1,\n  \"a\": 2\n}").unwrap_err();
        assert!(
            matches!(
                spread,
                DocumentError::DuplicateName {
                    line: 3,
                    column: 3,
                    ..
                }
            ),
            "{spread:?}"
        );
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
