//! The HTTP API's routes, in one table that everything else reads: the functions' dispatch ([`crate::api`]),
//! s3kv-local's gateway (which routes paths as API Gateway does), the tests, and the template check
//! (`tests/template_test.py` reads [`ROUTES`] from this file and holds `template.yaml` and `openapi.yaml` to it).
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

    #[test]
    fn allow_lists_what_one_function_serves() {
        assert_eq!(allow(ITEM, Function::Writer), "PUT, POST, DELETE");
        assert_eq!(allow(ITEM, Function::Reader), "GET");
        assert_eq!(allow(BATCH_GET, Function::Reader), "POST");
        assert_eq!(allow(RESTORE, Function::Writer), "POST");
        assert_eq!(allow(SCHEMA, Function::Writer), "GET, PUT, DELETE");
        assert_eq!(
            paths(),
            "/items/{key}, /items, /batch-get, /public/{key}, /versions/{key}, /restore/{key}, /changes, /schemas, /schemas/{key}"
        );
    }
}
