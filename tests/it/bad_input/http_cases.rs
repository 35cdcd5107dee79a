//! The HTTP half of the bad-input corpus, as data: each request with the status and error code it must get. A
//! file of its own, apart from the tests that run it, so that `bad_input.rs` stays under ~600 lines.

use base64::Engine;
use http::Method;

pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) method: Method,
    /// Path parameter as API Gateway passes it (still percent-encoded); `None` for no parameter at all.
    pub(super) key: Option<String>,
    pub(super) body: Option<String>,
    pub(super) base64: bool,
    pub(super) status: i64,
    /// Expected `error` code for 4xx answers.
    pub(super) code: Option<&'static str>,
}

fn case(
    name: &'static str,
    method: Method,
    key: &str,
    body: Option<&str>,
    status: i64,
    code: Option<&'static str>,
) -> Case {
    Case {
        name,
        method,
        key: Some(key.to_owned()),
        body: body.map(str::to_owned),
        base64: false,
        status,
        code,
    }
}

pub(super) fn http_cases() -> Vec<Case> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let put = |name, key: &str, body: &str, status, code| {
        case(name, Method::PUT, key, Some(body), status, code)
    };
    let bad_key =
        |name, key: &str| case(name, Method::PUT, key, Some("1"), 400, Some("invalid_key"));
    let mut cases = vec![
        // Bodies.
        put(
            "malformed JSON",
            "k",
            "{\"a\": }",
            400,
            Some("invalid_json"),
        ),
        put(
            "truncated object",
            "k",
            "{\"a\": [1, 2",
            400,
            Some("invalid_json"),
        ),
        put("truncated string", "k", "\"abc", 400, Some("invalid_json")),
        put("trailing garbage", "k", "{} {}", 400, Some("invalid_json")),
        put("single quotes", "k", "{'a': 1}", 400, Some("invalid_json")),
        put(
            "comments",
            "k",
            "{\"a\": 1 /* no */}",
            400,
            Some("invalid_json"),
        ),
        put("NaN", "k", "{\"a\": NaN}", 400, Some("invalid_json")),
        put(
            "byte order mark",
            "k",
            "\u{feff}{}",
            400,
            Some("invalid_json"),
        ),
        put("empty body", "k", "", 400, Some("empty_body")),
        put("whitespace body", "k", " \r\n\t ", 400, Some("empty_body")),
        case(
            "no body at all",
            Method::PUT,
            "k",
            None,
            400,
            Some("empty_body"),
        ),
        put(
            "nested 100,000 deep",
            "k",
            &format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            400,
            Some("invalid_json"),
        ),
        put(
            "nested 100,000 deep, unclosed",
            "k",
            &"{\"a\":".repeat(100_000),
            400,
            Some("invalid_json"),
        ),
        put(
            "body over the limit",
            "k",
            &format!("\"{}\"", "x".repeat(1 << 20)),
            413,
            Some("body_too_large"),
        ),
        put(
            "100 MB body",
            "k",
            &"x".repeat(100 << 20),
            413,
            Some("body_too_large"),
        ),
        // Valid JSON that naive stores mangle: stored byte-for-byte.
        put(
            "number beyond f64",
            "big-number",
            "{\"n\": 1e999999}",
            201,
            None,
        ),
        put(
            "integer beyond u64",
            "big-int",
            "123456789012345678901234567890",
            201,
            None,
        ),
        // Valid JSON, but readers disagree on which value counts (I-JSON refuses it; see s3kv::document).
        put(
            "duplicate object keys",
            "dup-keys",
            "{\"a\": 1, \"a\": 2}",
            400,
            Some("duplicate_name"),
        ),
        put("bare null", "null", "null", 201, None),
        put("empty string", "empty-string", "\"\"", 201, None),
        put("escaped NUL in a string", "nul", "\"\\u0000\"", 201, None),
        // Methods.
        case(
            "PATCH",
            Method::PATCH,
            "k",
            Some("{}"),
            405,
            Some("method_not_allowed"),
        ),
        case(
            "HEAD to the writer",
            Method::HEAD,
            "k",
            None,
            405,
            Some("method_not_allowed"),
        ),
        case(
            "OPTIONS to the writer",
            Method::OPTIONS,
            "k",
            None,
            405,
            Some("method_not_allowed"),
        ),
        case(
            "TRACE",
            Method::TRACE,
            "k",
            None,
            405,
            Some("method_not_allowed"),
        ),
        case(
            "DELETE of a missing key",
            Method::DELETE,
            "never-written",
            None,
            404,
            Some("not_found"),
        ),
        // Keys.
        bad_key("dot-dot", ".."),
        bad_key("dot", "."),
        bad_key("dot-dot segment", "a/../b"),
        bad_key("dot segment", "a/./b"),
        bad_key("double slash", "a//b"),
        bad_key("under the reserved .s3kv/ folder", ".s3kv/x"),
        bad_key("leading slash", "/a"),
        bad_key("encoded leading slash", "%2Fa"),
        bad_key("trailing slash", "a/"),
        bad_key("encoded dot-dot", "%2E%2E"),
        bad_key("encoded NUL", "a%00b"),
        bad_key("encoded newline", "a%0Ab"),
        bad_key("encoded DEL", "a%7F"),
        bad_key("C1 control", "a%C2%85"),
        bad_key("bare percent", "100%"),
        bad_key("bad hex escape", "%zz"),
        bad_key("invalid UTF-8 escape", "%C3%28"),
        bad_key("1,000-byte key", &"k".repeat(1000)),
        bad_key("513-byte key", &"k".repeat(513)),
        put("512-byte key", &"k".repeat(512), "1", 201, None),
        put(
            "double-encoded dots stay literal",
            "%252E%252E",
            "1",
            201,
            None,
        ),
        put("encoded slash separates segments", "a%2Fb", "1", 201, None),
        put("plus is a plus in paths", "a+b", "1", 201, None),
        put("unicode key", "caf%C3%A9%20%E2%9C%93", "1", 201, None),
        bad_key("empty key", ""),
    ];
    cases.push(Case {
        name: "missing path parameter",
        key: None,
        ..case("", Method::PUT, "", Some("1"), 400, Some("invalid_key"))
    });
    cases.push(Case {
        base64: true,
        ..case(
            "invalid base64",
            Method::PUT,
            "k",
            Some("not base64!"),
            400,
            Some("invalid_body"),
        )
    });
    cases.push(Case {
        base64: true,
        ..case(
            "non-UTF-8 JSON",
            Method::PUT,
            "k",
            Some(&b64(b"\"\xFF\xFE\"")),
            400,
            Some("invalid_json"),
        )
    });
    cases.push(Case {
        base64: true,
        ..case(
            "base64 JSON",
            Method::PUT,
            "b64",
            Some(&b64(b"{\"ok\":1}")),
            201,
            None,
        )
    });
    cases
}
