//! `/schemas`: the JSON Schema of each key prefix, which every write under it must meet
//! ([`crate::schema`] says how). Only write keys reach these routes, and a scoped key only sees and changes
//! schemas inside its prefixes: a schema for a shorter prefix would govern keys it may not write.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use http::header::{ETAG, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::access::Caller;
use crate::key::KeyPrefix;
use crate::ports::ObjectStore;
use crate::schema::MAX_SCHEMA_BYTES;
use crate::write::Writer;

use super::conditions::write_precondition;
use super::{
    author, empty_response, header_value, json_response, request_body, written_response, ApiError,
};

/// `GET /schemas`: every schema the caller may see, in prefix order, each with whether it compiles.
pub(super) async fn list<S: ObjectStore>(
    writer: &Writer<S>,
    caller: &Caller<'_>,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let set = writer.schemas(deadline).await?;
    let schemas: Vec<_> = set
        .all()
        .into_iter()
        .filter(|s| visible(caller, &s.prefix))
        .map(|s| {
            let mut entry = json!({
                "prefix": s.prefix.as_str(),
                "etag": s.etag.as_str(),
                "size": s.size,
                "lastModified": s.last_modified,
                "valid": s.problem().is_none(),
            });
            if let Some(problem) = s.problem() {
                entry["problem"] = json!(problem);
            }
            entry
        })
        .collect();
    let body = json!({ "schemas": schemas });
    Ok(json_response(
        StatusCode::OK,
        HeaderMap::new(),
        body.to_string(),
    ))
}

/// A scoped key sees the schemas inside its prefixes and the ones that govern its keys from above.
fn visible(caller: &Caller<'_>, prefix: &KeyPrefix) -> bool {
    caller.covers(prefix.as_str())
        || caller
            .prefixes()
            .iter()
            .any(|own| own.starts_with(prefix.as_str()))
}

/// `GET /schemas/{prefix}`: the schema document as stored, with its ETag for a conditional replace.
pub(super) async fn get<S: ObjectStore>(
    writer: &Writer<S>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let prefix = schema_prefix(request)?;
    if !visible(caller, &prefix) {
        return Err(caller.outside(prefix.as_str()).into());
    }
    let object = writer.get_schema(&prefix, deadline).await?;
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, header_value(&object.etag.quoted())?);
    if let Some(modified) = object.provenance.last_modified() {
        headers.insert(LAST_MODIFIED, header_value(&modified)?);
    }
    let text = String::from_utf8(Vec::from(object.body))
        .map_err(|_| ApiError::Internal(format!("stored schema for {prefix:?} is not UTF-8")))?;
    Ok(json_response(StatusCode::OK, headers, text))
}

/// `PUT /schemas/{prefix}`: 201 for a new schema, 200 for a replaced one; a schema that does not compile is a
/// 422 saying why. `If-Match` / `If-None-Match: *` hold as for items.
pub(super) async fn put<S: ObjectStore>(
    writer: &Writer<S>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let prefix = owned_prefix(request, caller)?;
    let precondition = write_precondition(request)?;
    let body = request_body(request, MAX_SCHEMA_BYTES)?;
    let author = author(caller, request);
    let written = writer
        .put_schema(&prefix, body, &precondition, &author, deadline)
        .await?;
    tracing::info!(prefix = %prefix, writer = %author.header(), "schema stored");
    written_response(
        &written,
        json!({ "prefix": prefix.as_str(), "etag": written.etag.as_str() }),
    )
}

/// `DELETE /schemas/{prefix}`: 204; keys under it fall to the next shorter prefix's schema, if any.
pub(super) async fn delete<S: ObjectStore>(
    writer: &Writer<S>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let prefix = owned_prefix(request, caller)?;
    let precondition = write_precondition(request)?;
    writer
        .delete_schema(&prefix, &precondition, deadline)
        .await?;
    tracing::info!(prefix = %prefix, writer = %author(caller, request).header(), "schema deleted");
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// The `{prefix}` path parameter, if the caller may change the schema of every key under it.
fn owned_prefix(
    request: &ApiGatewayProxyRequest,
    caller: &Caller<'_>,
) -> Result<KeyPrefix, ApiError> {
    let prefix = schema_prefix(request)?;
    if !caller.covers(prefix.as_str()) {
        return Err(caller.outside(prefix.as_str()).into());
    }
    Ok(prefix)
}

fn schema_prefix(request: &ApiGatewayProxyRequest) -> Result<KeyPrefix, ApiError> {
    let raw = request
        .path_parameters
        .get(crate::routes::KEY_PARAM)
        .ok_or(ApiError::MissingKey)?;
    Ok(KeyPrefix::from_path_param(raw)?)
}
