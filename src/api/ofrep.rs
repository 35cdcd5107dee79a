//! OpenFeature Remote Evaluation Protocol (OFREP, open-feature/protocol `service/openapi.yaml`): any OpenFeature
//! SDK's OFREP provider reads s3kv items as flags, with no s3kv code in the app.
//!
//! - Flag `beta` is the item `<S3KV_OFREP_PREFIX>beta` (`flags/beta` by default); its document is the flag's
//!   value, spliced byte for byte: `true` is a boolean flag, `"blue"` a string, `3` a number, `{...}` (or `[...]`)
//!   an object flag, and `null` "use the code's default" (OFREP's value-less success). The reason is always
//!   `STATIC`: s3kv stores values, it does not target, so the evaluation context is accepted and ignored.
//! - Single evaluation (`POST .../flags/{key}`, server providers) reads like `GET /items/{key}`: 200, 404
//!   `FLAG_NOT_FOUND`, or 400 `PARSE_ERROR` for a stored object that is not a servable document. Type mismatches
//!   are the provider's to report: OFREP carries no type in the request.
//! - Bulk evaluation (`POST .../flags`, web providers, which poll it) answers every flag the caller may read, up
//!   to [`BULK_MAX`], with an ETag. The ETag names the change feed's newest entry when it was read, so a poll that
//!   sends it back costs one cache command and answers 304 until anything changes (any change, anywhere: a
//!   conservative and cheap test). Without the feed, the ETag is a hash of the listed keys and ETags.
//! - Errors keep OFREP's shape (`errorCode`, `errorDetails`) and add s3kv's own `error` code.
//!
//! The public variants serve flags whose items lie under the public prefix, without a key.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use http::header::{HeaderValue, ETAG};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::access::Caller;
use crate::expiry::{self, Expiry};
use crate::key::ItemKey;
use crate::ports::{Cache, Cursor, Etag, Feed, ObjectStore, Unservable};
use crate::read::{CacheStatus, ListedItem, ReadResult, Reader};
use crate::routes;

use super::conditions::{read_precondition, KnownTags};
use super::items::check_response_size;
use super::{empty_response, json_response, request_body, ApiError, LIST_LIMIT_MAX};

/// Most flags one bulk evaluation answers: one listing page. A flag set is small; past this the answer says
/// `truncated` in its metadata and the rest are left out.
pub const BULK_MAX: usize = LIST_LIMIT_MAX;
/// Largest evaluation request body: a context is a handful of attributes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// OFREP's reason for a value that is stored, not computed.
const STATIC: &str = "STATIC";

/// `POST /ofrep/v1/evaluate/flags/{key}` and its public twin.
pub(super) async fn evaluate_one<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
    cache: &mut Vec<CacheStatus>,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let raw = request
        .path_parameters
        .get(routes::KEY_PARAM)
        .ok_or(ApiError::MissingKey)?;
    let flag =
        crate::percent::decode(raw, crate::percent::Encoding::Path).unwrap_or_else(|_| raw.clone());
    if let Err(failure) = context(request) {
        return Ok(failure.with_key(&flag).into_response());
    }
    let key = match item_key(reader.ofrep_prefix(), &flag) {
        Ok(key) => key,
        Err(error) => {
            return Ok(Failure::new(StatusCode::BAD_REQUEST, "GENERAL", &error)
                .with_key(&flag)
                .into_response())
        }
    };
    if !caller.covers(key.as_str()) {
        return Err(caller.outside(key.as_str()).into());
    }
    let result = match reader.get(&key, deadline).await {
        Ok(result) => result,
        Err(error) => return Ok(Failure::from_api(&error.into()).into_response()),
    };
    cache.push(result.cache);
    let body = match evaluation(&flag, &key, &result) {
        Evaluation::Value(success) => to_json(&success)?,
        Evaluation::Failure(failure) => return Ok(failure.into_response()),
    };
    check_response_size(&body, "store a smaller flag document")?;
    Ok(json_response(StatusCode::OK, HeaderMap::new(), body))
}

/// `POST /ofrep/v1/evaluate/flags` and its public twin: every flag the caller may read, with an ETag.
pub(super) async fn evaluate_all<S: ObjectStore, C: Cache + Feed>(
    reader: &Reader<S, C>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
    cache: &mut Vec<CacheStatus>,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    if let Err(failure) = context(request) {
        return Ok(failure.into_response());
    }
    let known = read_precondition(request)?;
    let prefixes = listed_prefixes(reader.ofrep_prefix(), caller);
    let scope = scope_hash(reader.ofrep_prefix(), &prefixes);
    // Read before the listing: a change that lands while it runs moves the feed past this cursor, so the next
    // poll fetches again rather than keeping what this one missed.
    let tail = reader.feed_tail().await;
    if let (Some(tail), Some(known)) = (tail, &known) {
        if let Some(held) = still_current(known, &feed_etag(tail, &scope), expiry::now()) {
            return not_modified(&held);
        }
    }
    let (listed, truncated) = match list(reader, caller, &prefixes, deadline).await {
        Ok(found) => found,
        Err(error) => return Ok(Failure::from_api(&error).into_response()),
    };
    let etag = match tail {
        Some(tail) => feed_etag(tail, &scope),
        None => content_etag(&scope, &listed),
    };
    if let Some(held) = known
        .as_ref()
        .and_then(|known| still_current(known, &etag, expiry::now()))
    {
        return not_modified(&held);
    }
    let keys: Vec<ItemKey> = listed.iter().map(|item| item.key.clone()).collect();
    let results = if keys.is_empty() {
        Vec::new()
    } else {
        match reader.get_many(&keys, deadline).await {
            Ok(results) => results,
            Err(error) => return Ok(Failure::from_api(&error.into()).into_response()),
        }
    };
    cache.extend(results.iter().map(|r| r.cache));
    let prefix = reader.ofrep_prefix();
    // An expired flag is left out, as the listing leaves out those the cache knows expired.
    let flags: Vec<Evaluation<'_>> = keys
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.expired.is_none())
        .map(|(key, result)| {
            let flag = key.as_str().strip_prefix(prefix).unwrap_or(key.as_str());
            evaluation(flag, key, result)
        })
        .collect();
    // An expiry changes the answer without any change the feed or the listing sees: the tag says when.
    let soonest = keys
        .iter()
        .zip(&results)
        .filter_map(|(_, result)| result.object.as_ref()?.provenance.expires)
        .min();
    let etag = with_expiry(&etag, soonest);
    let metadata = truncated.then_some(BulkMetadata { truncated: true });
    let body = to_json(&Bulk {
        flags: &flags,
        metadata,
    })?;
    check_response_size(&body, "keep fewer or smaller flags under the OFREP prefix")?;
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, etag_header(&etag)?);
    Ok(json_response(StatusCode::OK, headers, body))
}

/// The item a flag key names; the key rules apply to the whole item key.
fn item_key(prefix: &str, flag: &str) -> Result<ItemKey, String> {
    if flag.is_empty() {
        return Err("the flag key is empty".to_owned());
    }
    ItemKey::parse(&format!("{prefix}{flag}"))
        .map_err(|e| format!("flag {flag:?} names no valid item ({prefix}{flag}): {e}"))
}

/// What one flag evaluates to: a success with its stored value, or why not.
#[derive(Serialize)]
#[serde(untagged)]
enum Evaluation<'a> {
    Value(Success<'a>),
    Failure(Failure),
}

#[derive(Serialize)]
struct Success<'a> {
    key: &'a str,
    /// Absent for a stored `null`: OFREP's "use the code default".
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
    reason: &'static str,
    /// The item's ETag: which version of the value this is (and some providers require a variant).
    variant: &'a str,
}

#[derive(Serialize)]
struct Bulk<'a> {
    flags: &'a [Evaluation<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<BulkMetadata>,
}

#[derive(Serialize)]
struct BulkMetadata {
    truncated: bool,
}

fn evaluation<'a>(flag: &'a str, key: &ItemKey, result: &'a ReadResult) -> Evaluation<'a> {
    let Some(object) = &result.object else {
        return Evaluation::Failure(match (&result.unservable, result.expired) {
            (Some(why), _) => unservable(flag, key, why),
            (None, Some(at)) => Failure {
                error: Some("expired"),
                ..Failure::new(
                    StatusCode::NOT_FOUND,
                    "FLAG_NOT_FOUND",
                    &format!("flag {flag:?} expired at {} (item {key})", at.rfc3339()),
                )
                .with_key(flag)
            },
            (None, None) => Failure::new(
                StatusCode::NOT_FOUND,
                "FLAG_NOT_FOUND",
                &format!("flag {flag:?} was not found (no item {key})"),
            )
            .with_key(flag),
        });
    };
    // The stored bytes, spliced in as they are (see batch get): the value is exactly what was written.
    let raw = std::str::from_utf8(&object.body)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    let Some(raw) = raw else {
        return Evaluation::Failure(unservable(flag, key, &Unservable::InvalidDocument(None)));
    };
    Evaluation::Value(Success {
        key: flag,
        value: (raw.get() != "null").then_some(raw),
        reason: STATIC,
        variant: object.etag.as_str(),
    })
}

fn unservable(flag: &str, key: &ItemKey, why: &Unservable) -> Failure {
    let code = ApiError::unservable_code(why);
    let details = match why {
        Unservable::InvalidDocument(Some(words)) => {
            format!("the item {key} is not a flag value ({code}): {words}")
        }
        _ => format!("the item {key} is not a flag value ({code})"),
    };
    Failure {
        error: Some(code),
        ..Failure::new(StatusCode::BAD_REQUEST, "PARSE_ERROR", &details).with_key(flag)
    }
}

/// An OFREP error answer: a status and `{key?, errorCode, errorDetails, error?}`.
#[derive(Serialize)]
struct Failure {
    #[serde(skip)]
    status: StatusCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(rename = "errorCode")]
    error_code: &'static str,
    #[serde(rename = "errorDetails")]
    error_details: String,
    /// s3kv's error code, when the failure is one of the API's own errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

impl Failure {
    fn new(status: StatusCode, error_code: &'static str, details: &str) -> Self {
        Self {
            status,
            key: None,
            error_code,
            error_details: details.to_owned(),
            error: None,
        }
    }

    fn with_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    /// The API's error in OFREP's shape, with its status (a 503 stays a 503: the provider reports it as an error
    /// and keeps its cached values, which is what an outage should do).
    fn from_api(error: &ApiError) -> Self {
        if error.status().is_server_error() {
            tracing::error!(code = error.code(), %error, "flag evaluation failed");
        }
        Self {
            error: Some(error.code()),
            ..Self::new(error.status(), "GENERAL", &error.to_string())
        }
    }

    fn into_response(self) -> ApiGatewayProxyResponse {
        let body = serde_json::to_string(&self).unwrap_or_else(|_| "{}".to_owned());
        json_response(self.status, HeaderMap::new(), body)
    }
}

/// The request's evaluation context, checked and ignored: s3kv does not target. An empty body or `{}` is taken
/// as an empty context (providers send `{}` when the app set none).
fn context(request: &ApiGatewayProxyRequest) -> Result<(), Failure> {
    let body = request_body(request, MAX_REQUEST_BYTES).map_err(|e| Failure::from_api(&e))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "PARSE_ERROR",
            &format!("the request body is not JSON: {e}"),
        )
    })?;
    let invalid = |details: &str| Failure::new(StatusCode::BAD_REQUEST, "INVALID_CONTEXT", details);
    let Some(request) = parsed.as_object() else {
        return Err(invalid(
            "the request body must be an object: {\"context\": {...}}",
        ));
    };
    match request.get("context") {
        None | Some(serde_json::Value::Object(_)) => Ok(()),
        Some(_) => Err(invalid("context must be an object")),
    }
}

/// The item prefixes to list for the caller's flags: where the OFREP prefix and each of the caller's prefixes
/// overlap, the longer of the two (none when they do not).
fn listed_prefixes(ofrep: &str, caller: &Caller<'_>) -> Vec<String> {
    let granted: Vec<&str> = match caller {
        Caller::Public { prefix } => vec![prefix],
        _ if caller.prefixes().is_empty() => vec![""],
        _ => caller.prefixes().iter().map(String::as_str).collect(),
    };
    let mut prefixes: Vec<String> = Vec::new();
    for granted in granted {
        let prefix = if granted.starts_with(ofrep) {
            granted
        } else if ofrep.starts_with(granted) {
            ofrep
        } else {
            continue;
        };
        if !prefixes.iter().any(|p| prefix.starts_with(p.as_str())) {
            prefixes.retain(|p| !p.starts_with(prefix));
            prefixes.push(prefix.to_owned());
        }
    }
    prefixes.sort();
    prefixes
}

/// The flags under `prefixes`, in key order, at most [`BULK_MAX`]; whether some were left out.
async fn list<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    caller: &Caller<'_>,
    prefixes: &[String],
    deadline: Instant,
) -> Result<(Vec<ListedItem>, bool), ApiError> {
    let mut listed = Vec::new();
    for prefix in prefixes {
        let mut next = None;
        loop {
            let page = reader.list(prefix, LIST_LIMIT_MAX, next, deadline).await?;
            for item in page.items {
                if !caller.covers(item.key.as_str()) {
                    continue;
                }
                if listed.len() == BULK_MAX {
                    tracing::warn!(
                        max = BULK_MAX,
                        "more flags than one bulk evaluation answers; the rest are left out"
                    );
                    return Ok((listed, true));
                }
                listed.push(item);
            }
            match page.next {
                Some(token) => next = Some(token),
                None => break,
            }
        }
    }
    Ok((listed, false))
}

/// Names the caller's view of the flags, so one key's ETag never validates another's answer.
fn scope_hash(ofrep: &str, prefixes: &[String]) -> String {
    let mut hash = Sha256::new();
    hash.update(ofrep.as_bytes());
    for prefix in prefixes {
        hash.update([0]);
        hash.update(prefix.as_bytes());
    }
    hex(&hash.finalize()[..6])
}

fn feed_etag(tail: Cursor, scope: &str) -> String {
    format!("\"f-{tail}-{scope}\"")
}

/// Without the feed: the listed keys and their ETags, which change whenever a flag does.
fn content_etag(scope: &str, listed: &[ListedItem]) -> String {
    let mut hash = Sha256::new();
    for item in listed {
        hash.update(item.key.as_str().as_bytes());
        hash.update([0]);
        hash.update(item.etag.as_str().as_bytes());
        hash.update([0]);
    }
    format!("\"c-{}-{scope}\"", hex(&hash.finalize()[..12]))
}

/// `etag` with the first second a served flag expires at (`"...-x<seconds>"`), so a poll that sends it back after
/// that second gets the new answer (see [`still_current`]).
fn with_expiry(etag: &str, soonest: Option<Expiry>) -> String {
    match soonest {
        Some(at) => format!("\"{}-x{}\"", Etag::new(etag).as_str(), at.stored()),
        None => etag.to_owned(),
    }
}

/// The tag the client holds, if it still describes the answer: `etag` itself, or `etag` with an expiry that has not
/// come at `now`. `None`: answer in full.
fn still_current(known: &KnownTags, etag: &str, now: i64) -> Option<String> {
    let tags = match known {
        KnownTags::Any => return Some(etag.to_owned()),
        KnownTags::Some(tags) => tags,
    };
    let base = Etag::new(etag);
    tags.iter().find_map(|tag| {
        if *tag == base {
            return Some(etag.to_owned());
        }
        let at = tag
            .as_str()
            .strip_prefix(base.as_str())?
            .strip_prefix("-x")
            .and_then(Expiry::parse_stored)?;
        (!at.has_passed(now)).then(|| tag.quoted())
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn etag_header(etag: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(etag).map_err(|_| ApiError::Internal(format!("bad ETag {etag:?}")))
}

fn not_modified(etag: &str) -> Result<ApiGatewayProxyResponse, ApiError> {
    let mut response = empty_response(StatusCode::NOT_MODIFIED);
    response.headers.insert(ETAG, etag_header(etag)?);
    Ok(response)
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(format!("OFREP answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Grant, Role};

    #[test]
    fn a_bulk_tag_with_an_expiry_holds_only_until_that_second() {
        let base = feed_etag(Cursor::new(5, 1), "s");
        let tagged = with_expiry(&base, Some(Expiry::at(100)));
        assert_eq!(tagged, "\"f-5-1-s-x100\"");
        assert_eq!(with_expiry(&base, None), base);
        let held = KnownTags::Some(vec![Etag::new(&tagged)]);
        assert_eq!(still_current(&held, &base, 99), Some(tagged.clone()));
        assert_eq!(still_current(&held, &base, 100), None);
        let other = feed_etag(Cursor::new(6, 0), "s");
        assert_eq!(still_current(&held, &other, 99), None);
        let plain = KnownTags::Some(vec![Etag::new(&base)]);
        assert_eq!(still_current(&plain, &base, 100), Some(base.clone()));
        assert_eq!(still_current(&KnownTags::Any, &base, 0), Some(base));
    }

    #[test]
    fn the_listed_prefixes_are_where_the_flags_and_the_callers_prefixes_overlap() {
        let open = Caller::Unrestricted { id: None };
        assert_eq!(listed_prefixes("flags/", &open), ["flags/"]);
        let public = Caller::Public {
            prefix: "flags/web/",
        };
        assert_eq!(listed_prefixes("flags/", &public), ["flags/web/"]);
        let elsewhere = Caller::Public { prefix: "public/" };
        assert!(listed_prefixes("flags/", &elsewhere).is_empty());
        let grant = Grant {
            role: Role::Read,
            prefixes: vec![
                "flags/a/".into(),
                "config/".into(),
                "flags/a/b/".into(),
                "fl".into(),
            ],
            name: None,
        };
        let key = Caller::Key {
            id: "k",
            grant: &grant,
        };
        assert_eq!(listed_prefixes("flags/", &key), ["flags/"]);
        let grant = Grant {
            prefixes: vec!["flags/b/".into(), "flags/a/".into()],
            ..grant
        };
        let key = Caller::Key {
            id: "k",
            grant: &grant,
        };
        assert_eq!(listed_prefixes("flags/", &key), ["flags/a/", "flags/b/"]);
    }

    #[test]
    fn flag_keys_name_items_under_the_prefix() {
        assert_eq!(
            item_key("flags/", "checkout/new-ui").unwrap().as_str(),
            "flags/checkout/new-ui"
        );
        assert!(item_key("flags/", "").is_err());
        assert!(item_key("flags/", "a//b").is_err());
    }

    #[test]
    fn etags_differ_by_scope_and_by_cursor() {
        let a = scope_hash("flags/", &["flags/".into()]);
        let b = scope_hash("flags/", &["flags/a/".into()]);
        assert_ne!(a, b);
        assert_ne!(
            feed_etag(Cursor::new(1, 0), &a),
            feed_etag(Cursor::new(1, 1), &a)
        );
    }
}
