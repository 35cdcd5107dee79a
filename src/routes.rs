//! The HTTP API's routes, in one table that everything else reads: the functions' dispatch ([`crate::api`]),
//! s3kv-local's gateway (which routes paths as API Gateway does), and the tests; this module's tests hold
//! `template.yaml`'s API events and `openapi.yaml`'s operations to it (`tests/template_test.py` reads the public
//! route from it too).
//! A new route is one row here, then an event in the template and a path in `openapi.yaml`.

use http::Method;

use crate::access::Permission;

/// API Gateway's resource paths, as the template declares them; `{key+}` is a greedy path parameter.
pub const ITEM: &str = "/items/{key+}";
pub const LIST: &str = "/items";
pub const BATCH_GET: &str = "/batch-get";
/// Keyless reads of the public prefix (`S3KV_PUBLIC_PREFIX`); the only route API Gateway lets through without a key.
pub const PUBLIC_ITEM: &str = "/public/{key+}";
/// An item's history (the bucket's versions of its object), and bringing an old version back.
pub const VERSIONS: &str = "/versions/{key+}";
pub const RESTORE: &str = "/restore/{key+}";
/// The change feed: which items changed after a cursor, waiting for the next change when there is none yet.
pub const CHANGES: &str = "/changes";
/// JSON Schemas per key prefix: the list, and one prefix's schema (the `{key+}` value is the prefix).
pub const SCHEMAS: &str = "/schemas";
pub const SCHEMA: &str = "/schemas/{key+}";
/// OpenFeature Remote Evaluation Protocol (OFREP): one flag, and every flag the caller may read. A provider is
/// given the API's URL as its base and appends `/ofrep/v1/...` itself.
pub const OFREP_FLAG: &str = "/ofrep/v1/evaluate/flags/{key+}";
pub const OFREP_FLAGS: &str = "/ofrep/v1/evaluate/flags";
/// The same without a key, for flags under the public prefix: a provider's base URL is the API's URL +
/// `/public-flags`. Not under `/public/`, where every path is an item key.
pub const PUBLIC_OFREP_FLAG: &str = "/public-flags/ofrep/v1/evaluate/flags/{key+}";
pub const PUBLIC_OFREP_FLAGS: &str = "/public-flags/ofrep/v1/evaluate/flags";
/// The item routes' path parameter.
pub const KEY_PARAM: &str = "key";

/// The Lambda function that serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Writer,
    Reader,
}

/// What a route does; [`Operation::id`] is its `operationId` in `openapi.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    GetItem,
    PutItem,
    PostItem,
    DeleteItem,
    ListItems,
    BatchGet,
    GetPublicItem,
    ListVersions,
    RestoreItem,
    ListChanges,
    ListSchemas,
    GetSchema,
    PutSchema,
    DeleteSchema,
    EvaluateFlag,
    EvaluateFlags,
    EvaluatePublicFlag,
    EvaluatePublicFlags,
}

impl Operation {
    pub fn id(self) -> &'static str {
        match self {
            Operation::GetItem => "getItem",
            Operation::PutItem => "putItem",
            Operation::PostItem => "postItem",
            Operation::DeleteItem => "deleteItem",
            Operation::ListItems => "listItems",
            Operation::BatchGet => "batchGet",
            Operation::GetPublicItem => "getPublicItem",
            Operation::ListVersions => "listVersions",
            Operation::RestoreItem => "restoreItem",
            Operation::ListChanges => "listChanges",
            Operation::ListSchemas => "listSchemas",
            Operation::GetSchema => "getSchema",
            Operation::PutSchema => "putSchema",
            Operation::DeleteSchema => "deleteSchema",
            Operation::EvaluateFlag => "evaluateFlag",
            Operation::EvaluateFlags => "evaluateFlagsBulk",
            Operation::EvaluatePublicFlag => "evaluatePublicFlag",
            Operation::EvaluatePublicFlags => "evaluatePublicFlagsBulk",
        }
    }
}

#[derive(Debug)]
pub struct Route {
    pub function: Function,
    pub resource: &'static str,
    pub method: Method,
    pub operation: Operation,
    /// What the caller's key must allow; [`Permission::Public`] routes need no key at all.
    pub permission: Permission,
}

impl Route {
    const fn new(
        function: Function,
        resource: &'static str,
        method: Method,
        operation: Operation,
        permission: Permission,
    ) -> Self {
        Self {
            function,
            resource,
            method,
            operation,
            permission,
        }
    }

    /// Whether API Gateway asks for an API key before calling the function.
    pub fn needs_api_key(&self) -> bool {
        self.permission != Permission::Public
    }
}

use Function::{Reader, Writer};
use Permission::{Public, Read, Write};

/// Every route, one row each (the template check parses these rows).
pub const ROUTES: &[Route] = &[
    Route::new(Reader, ITEM, Method::GET, Operation::GetItem, Read),
    Route::new(Writer, ITEM, Method::PUT, Operation::PutItem, Write),
    Route::new(Writer, ITEM, Method::POST, Operation::PostItem, Write),
    Route::new(Writer, ITEM, Method::DELETE, Operation::DeleteItem, Write),
    Route::new(Reader, LIST, Method::GET, Operation::ListItems, Read),
    Route::new(Reader, BATCH_GET, Method::POST, Operation::BatchGet, Read),
    Route::new(
        Reader,
        PUBLIC_ITEM,
        Method::GET,
        Operation::GetPublicItem,
        Public,
    ),
    Route::new(Reader, VERSIONS, Method::GET, Operation::ListVersions, Read),
    Route::new(Writer, RESTORE, Method::POST, Operation::RestoreItem, Write),
    Route::new(Reader, CHANGES, Method::GET, Operation::ListChanges, Read),
    // Schemas decide what may be written, so only write keys see or change them.
    Route::new(Writer, SCHEMAS, Method::GET, Operation::ListSchemas, Write),
    Route::new(Writer, SCHEMA, Method::GET, Operation::GetSchema, Write),
    Route::new(Writer, SCHEMA, Method::PUT, Operation::PutSchema, Write),
    Route::new(
        Writer,
        SCHEMA,
        Method::DELETE,
        Operation::DeleteSchema,
        Write,
    ),
    // OFREP evaluates with POST (the context is a body), but only reads.
    Route::new(
        Reader,
        OFREP_FLAG,
        Method::POST,
        Operation::EvaluateFlag,
        Read,
    ),
    Route::new(
        Reader,
        OFREP_FLAGS,
        Method::POST,
        Operation::EvaluateFlags,
        Read,
    ),
    Route::new(
        Reader,
        PUBLIC_OFREP_FLAG,
        Method::POST,
        Operation::EvaluatePublicFlag,
        Public,
    ),
    Route::new(
        Reader,
        PUBLIC_OFREP_FLAGS,
        Method::POST,
        Operation::EvaluatePublicFlags,
        Public,
    ),
];

/// The route of a request as API Gateway hands it over (`resource` and method).
pub fn find(resource: &str, method: &Method) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.resource == resource && r.method == method)
}

/// Whether any route has this resource.
pub fn exists(resource: &str) -> bool {
    ROUTES.iter().any(|r| r.resource == resource)
}

/// The methods `function` serves on `resource`, as an `Allow` header value (`PUT, POST, DELETE`).
pub fn allow(resource: &str, function: Function) -> String {
    ROUTES
        .iter()
        .filter(|r| r.resource == resource && r.function == function)
        .map(|r| r.method.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The paths a client may call, for a "no such route" message: `/items/{key}, /items, /batch-get`.
pub fn paths() -> String {
    let mut paths: Vec<String> = Vec::new();
    for route in ROUTES {
        let path = route.resource.replace("{key+}", "{key}");
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths.join(", ")
}

/// The URL path of a prefix's schema. A trailing `/` is sent as `%2F`: proxies and gateways may drop or merge a
/// literal trailing slash, and the function decodes either.
pub fn schema_path(prefix: &crate::key::KeyPrefix) -> String {
    let raw = prefix.as_str();
    match raw.strip_suffix('/') {
        Some(head) => format!("/schemas/{}%2F", crate::percent::encode_path(head)),
        None => format!("/schemas/{}", crate::percent::encode_path(raw)),
    }
}

/// The resource a request path belongs to, and the raw (still percent-encoded) `{key+}` value: API Gateway's
/// routing, for s3kv-local. Exact resources win over the greedy one.
pub fn match_path(path: &str) -> Option<(&'static str, Option<&str>)> {
    if let Some(route) = ROUTES.iter().find(|r| r.resource == path) {
        return Some((route.resource, None));
    }
    ROUTES.iter().find_map(|route| {
        let prefix = route.resource.strip_suffix("{key+}")?;
        let key = path.strip_prefix(prefix).filter(|k| !k.is_empty())?;
        Some((route.resource, Some(key)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_as_api_gateway_routes_them() {
        assert_eq!(match_path("/items"), Some((LIST, None)));
        assert_eq!(match_path("/batch-get"), Some((BATCH_GET, None)));
        assert_eq!(match_path("/items/a%2Fb/c"), Some((ITEM, Some("a%2Fb/c"))));
        assert_eq!(match_path("/items/"), None);
        assert_eq!(
            match_path("/public/flags/x"),
            Some((PUBLIC_ITEM, Some("flags/x")))
        );
        assert_eq!(match_path("/versions/a/b"), Some((VERSIONS, Some("a/b"))));
        assert_eq!(match_path("/restore/a"), Some((RESTORE, Some("a"))));
        assert_eq!(match_path("/changes"), Some((CHANGES, None)));
        assert_eq!(match_path("/changes/x"), None);
        assert_eq!(match_path("/schemas"), Some((SCHEMAS, None)));
        let prefix = crate::key::KeyPrefix::parse("a b/c/").unwrap();
        assert_eq!(schema_path(&prefix), "/schemas/a%20b/c%2F");
        let path = schema_path(&prefix);
        let (_, encoded) = match_path(&path).unwrap();
        assert_eq!(
            crate::key::KeyPrefix::from_path_param(encoded.unwrap()).unwrap(),
            prefix
        );
        assert_eq!(
            match_path("/schemas/flags%2F"),
            Some((SCHEMA, Some("flags%2F")))
        );
        assert_eq!(
            match_path("/ofrep/v1/evaluate/flags"),
            Some((OFREP_FLAGS, None))
        );
        assert_eq!(
            match_path("/ofrep/v1/evaluate/flags/checkout/new-ui"),
            Some((OFREP_FLAG, Some("checkout/new-ui")))
        );
        assert_eq!(
            match_path("/public-flags/ofrep/v1/evaluate/flags/a"),
            Some((PUBLIC_OFREP_FLAG, Some("a")))
        );
        assert_eq!(match_path("/other"), None);
    }

    #[test]
    fn each_resource_and_method_has_one_route_and_each_operation_one_row() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    a.resource != b.resource || a.method != b.method,
                    "{a:?} {b:?}"
                );
                assert_ne!(a.operation, b.operation);
            }
        }
    }

    /// A YAML file of the repository, CloudFormation's `!Ref`-style tags read as tagged values.
    fn yaml(file: &str) -> serde_norway::Value {
        let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn text(value: &serde_norway::Value) -> &str {
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a string: {value:?}"))
    }

    /// The template's API events, per function binary: (path, method, needs an API key).
    fn template_routes() -> std::collections::BTreeSet<(&'static str, String, String, bool)> {
        let template = yaml("template.yaml");
        let api = &template["Resources"]["Api"]["Properties"];
        assert_eq!(
            api["Auth"]["ApiKeyRequired"],
            serde_norway::Value::Bool(true),
            "the stage requires keys"
        );
        let mut routes = std::collections::BTreeSet::new();
        let resources = template["Resources"].as_mapping().expect("Resources");
        for resource in resources.values() {
            if resource["Type"] != "AWS::Serverless::Function" {
                continue;
            }
            let function = match text(&resource["Metadata"]["BuildProperties"]["Binary"]) {
                "writer" => "writer",
                "reader" => "reader",
                _ => continue,
            };
            let Some(events) = resource["Properties"]["Events"].as_mapping() else {
                continue;
            };
            for event in events.values().filter(|e| e["Type"] == "Api") {
                let props = &event["Properties"];
                let keyed = props["Auth"]["ApiKeyRequired"].as_bool().unwrap_or(true);
                routes.insert((
                    function,
                    text(&props["Path"]).to_owned(),
                    text(&props["Method"]).to_owned(),
                    keyed,
                ));
            }
        }
        routes
    }

    #[test]
    fn the_template_has_an_api_event_for_exactly_each_route_and_asks_a_key_where_it_needs_one() {
        let table: std::collections::BTreeSet<_> = ROUTES
            .iter()
            .map(|r| {
                let function = match r.function {
                    Function::Writer => "writer",
                    Function::Reader => "reader",
                };
                (
                    function,
                    r.resource.to_owned(),
                    r.method.to_string(),
                    r.needs_api_key(),
                )
            })
            .collect();
        assert_eq!(template_routes(), table);
    }

    #[test]
    fn openapi_documents_exactly_the_route_table() {
        let spec = yaml("openapi.yaml");
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in spec["paths"].as_mapping().expect("paths") {
            for (method, operation) in item.as_mapping().expect("a path item") {
                let method = text(method).to_ascii_uppercase();
                if ["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&method.as_str()) {
                    let id = text(&operation["operationId"]).to_owned();
                    documented.insert((text(path).to_owned(), method, id));
                }
            }
        }
        let table: std::collections::BTreeSet<_> = ROUTES
            .iter()
            .map(|r| {
                (
                    r.resource.replace("{key+}", "{key}"),
                    r.method.to_string(),
                    r.operation.id().to_owned(),
                )
            })
            .collect();
        assert_eq!(documented, table);
    }

    #[test]
    fn allow_lists_what_one_function_serves() {
        assert_eq!(allow(ITEM, Function::Writer), "PUT, POST, DELETE");
        assert_eq!(allow(ITEM, Function::Reader), "GET");
        assert_eq!(allow(BATCH_GET, Function::Reader), "POST");
        assert_eq!(allow(RESTORE, Function::Writer), "POST");
        assert_eq!(allow(SCHEMA, Function::Writer), "GET, PUT, DELETE");
        assert_eq!(
            paths(),
            "/items/{key}, /items, /batch-get, /public/{key}, /versions/{key}, /restore/{key}, /changes, /schemas, /schemas/{key}, \
             /ofrep/v1/evaluate/flags/{key}, /ofrep/v1/evaluate/flags, /public-flags/ofrep/v1/evaluate/flags/{key}, \
             /public-flags/ofrep/v1/evaluate/flags"
        );
    }
}
