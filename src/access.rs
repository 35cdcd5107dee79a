//! Who may do what. API Gateway's API keys only identify a caller (AWS says so: a key is not authorization); the
//! functions learn which key was used from `requestContext.identity.apiKeyId` and this module decides what that
//! key may do, before any S3 or Valkey call.
//!
//! A key has a [`Role`] (`read`, or `write` which includes read) and, optionally, the item key prefixes it is
//! limited to, for everything it does: a key for `flags/` neither reads nor writes `config/`. A key id the
//! configuration does not name gets nothing. One prefix may be readable without any key ([`Permission::Public`]:
//! `GET /public/{key}` only, never a listing, never a write).
//!
//! The grants come from `S3KV_API_KEYS` (the template's own read and write keys) and `S3KV_EXTRA_API_KEYS`
//! (the operator's, a stack parameter), both JSON objects of key id → grant:
//! `{"a1b2c3d4e5": {"role": "write", "prefixes": ["flags/"], "name": "flags-bot"}}`. With neither set, every key
//! API Gateway accepts may do everything, as before roles existed (the template always sets them).

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

use crate::config::{Config, ConfigError};

/// What a route needs; each row of [`crate::routes::ROUTES`] names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Any key with a role: GET an item, list, batch get.
    Read,
    /// A key with the `write` role: PUT, POST, DELETE.
    Write,
    /// No key at all, and only items under the public prefix.
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }
}

/// What one API key may do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub role: Role,
    /// The item key prefixes the key is limited to; empty means every key.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// A name for people (audit metadata, logs); the key id is used where there is none.
    #[serde(default)]
    pub name: Option<String>,
}

impl Grant {
    /// Whether this key may touch the item `key` at all (its prefixes; the role is checked per route).
    pub fn covers(&self, key: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn describe(&self) -> String {
        let what = match self.role {
            Role::Read => "may only read",
            Role::Write => "may read and write",
        };
        if self.prefixes.is_empty() {
            format!("{what} every item")
        } else {
            format!("{what} items under {}", quoted_list(&self.prefixes))
        }
    }
}

/// The authorization configuration of the API functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `None`: no grants configured, every key may do everything.
    grants: Option<BTreeMap<String, Grant>>,
    public_prefix: Option<String>,
}

/// The caller of one request, once its key is known to be allowed on the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A configured key.
    Key { id: &'a str, grant: &'a Grant },
    /// Any key, with no grants configured (or no key id at all): everything is allowed.
    Unrestricted { id: Option<&'a str> },
    /// No key, on the public route: only items under `prefix`.
    Public { prefix: &'a str },
}

impl Caller<'_> {
    /// Whether the caller may touch the item `key` (read it, or write it if the route allowed writing).
    pub fn covers(&self, key: &str) -> bool {
        match self {
            Caller::Key { grant, .. } => grant.covers(key),
            Caller::Unrestricted { .. } => true,
            Caller::Public { prefix } => key.starts_with(prefix),
        }
    }

    /// The item key prefixes the caller is limited to; empty for every key.
    pub fn prefixes(&self) -> &[String] {
        match self {
            Caller::Key { grant, .. } => &grant.prefixes,
            _ => &[],
        }
    }

    /// The key id, when a key was used.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Caller::Key { id, .. } => Some(id),
            Caller::Unrestricted { id } => *id,
            Caller::Public { .. } => None,
        }
    }

    /// The key's name, when the configuration gives one.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Caller::Key { grant, .. } => grant.name.as_deref(),
            _ => None,
        }
    }

    /// The refusal for an item outside what the caller may touch.
    pub fn outside(&self, key: &str) -> Denied {
        match self {
            Caller::Key { id, grant } => Denied::OutsidePrefixes {
                key: key.to_owned(),
                who: who(id, grant),
                may: grant.describe(),
                role: grant.role,
                prefixes: grant.prefixes.clone(),
            },
            Caller::Public { prefix } => Denied::NotPublic {
                key: key.to_owned(),
                prefix: (*prefix).to_owned(),
            },
            Caller::Unrestricted { .. } => Denied::NoKey,
        }
    }
}

/// Why a request is refused (403). Every message says what the caller may do instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Denied {
    #[error("this request needs an API key (send it in x-api-key)")]
    NoKey,
    #[error("API key {id} has no role in s3kv; give it one in S3KV_EXTRA_API_KEYS (the template's ExtraApiKeys parameter)")]
    UnknownKey { id: String },
    #[error("{who} {may}; it may not write")]
    ReadOnly {
        who: String,
        may: String,
        prefixes: Vec<String>,
    },
    #[error("{who} {may}, not {key:?}")]
    OutsidePrefixes {
        key: String,
        who: String,
        may: String,
        role: Role,
        prefixes: Vec<String>,
    },
    #[error(
        "public reads are off (PublicReadPrefix is empty); use GET /items/{{key}} with an API key"
    )]
    PublicOff,
    #[error("only items under {prefix:?} may be read without an API key, not {key:?}")]
    NotPublic { key: String, prefix: String },
    #[error("public reads come from the cache; a consistent read needs an API key (GET /items/{{key}}?consistent=true)")]
    PublicConsistent,
    #[error("an item's history needs an API key (GET /items/{{key}}?version=...)")]
    PublicHistory,
}

impl Denied {
    /// The caller's role and prefixes, for the error body, when the refusal concerns a known key.
    pub fn grant(&self) -> Option<(Role, &[String])> {
        match self {
            Denied::ReadOnly { prefixes, .. } => Some((Role::Read, prefixes)),
            Denied::OutsidePrefixes { role, prefixes, .. } => Some((*role, prefixes)),
            _ => None,
        }
    }
}

impl Access {
    /// No grants: every caller may do everything, and nothing is public.
    pub fn unrestricted() -> Self {
        Self {
            grants: None,
            public_prefix: None,
        }
    }

    /// Exactly these keys (by id), and optionally a public prefix.
    pub fn new(
        grants: impl IntoIterator<Item = (String, Grant)>,
        public_prefix: Option<String>,
    ) -> Self {
        Self {
            grants: Some(grants.into_iter().collect()),
            public_prefix: public_prefix.filter(|p| !p.is_empty()),
        }
    }

    /// From `S3KV_API_KEYS`, `S3KV_EXTRA_API_KEYS` and `S3KV_PUBLIC_PREFIX`, each error naming its variable.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut grants: Option<BTreeMap<String, Grant>> = None;
        for (var, raw) in [
            ("S3KV_API_KEYS", &config.api_keys),
            ("S3KV_EXTRA_API_KEYS", &config.extra_api_keys),
        ] {
            let Some(raw) = raw else { continue };
            let parsed = parse_grants(raw).map_err(|reason| ConfigError::Invalid {
                var,
                value: raw.clone(),
                reason,
            })?;
            let all = grants.get_or_insert_with(BTreeMap::new);
            for (id, grant) in parsed {
                if all.contains_key(&id) {
                    return Err(ConfigError::Invalid {
                        var,
                        value: raw.clone(),
                        reason: format!("key id {id} is granted twice"),
                    });
                }
                all.insert(id, grant);
            }
        }
        if let Some(prefix) = &config.public_prefix {
            check_prefix(prefix).map_err(|reason| ConfigError::Invalid {
                var: "S3KV_PUBLIC_PREFIX",
                value: prefix.clone(),
                reason,
            })?;
        }
        // A public prefix alone does not turn key checks on: with no grants, keys stay unrestricted.
        Ok(Self {
            grants,
            public_prefix: config.public_prefix.clone(),
        })
    }

    pub fn public_prefix(&self) -> Option<&str> {
        self.public_prefix.as_deref()
    }

    /// The grants, by key id (`None` when unrestricted), for the local stack to print.
    pub fn grants(&self) -> Option<&BTreeMap<String, Grant>> {
        self.grants.as_ref()
    }

    /// Whether the caller with `key_id` may use a route that needs `permission`; item prefixes are checked by
    /// the route with [`Caller::covers`].
    pub fn authorize<'a>(
        &'a self,
        key_id: Option<&'a str>,
        permission: Permission,
    ) -> Result<Caller<'a>, Denied> {
        if permission == Permission::Public {
            return match &self.public_prefix {
                Some(prefix) => Ok(Caller::Public { prefix }),
                None => Err(Denied::PublicOff),
            };
        }
        let key_id = key_id.filter(|id| !id.is_empty());
        let Some(grants) = &self.grants else {
            return Ok(Caller::Unrestricted { id: key_id });
        };
        let id = key_id.ok_or(Denied::NoKey)?;
        let grant = grants
            .get(id)
            .ok_or_else(|| Denied::UnknownKey { id: id.to_owned() })?;
        if permission == Permission::Write && grant.role != Role::Write {
            return Err(Denied::ReadOnly {
                who: who(id, grant),
                may: grant.describe(),
                prefixes: grant.prefixes.clone(),
            });
        }
        Ok(Caller::Key { id, grant })
    }
}

fn who(id: &str, grant: &Grant) -> String {
    match &grant.name {
        Some(name) => format!("API key {name} ({id})"),
        None => format!("API key {id}"),
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_grants(raw: &str) -> Result<BTreeMap<String, Grant>, String> {
    let grants: BTreeMap<String, Grant> = serde_json::from_str(raw).map_err(|e| {
        format!(
            "{e}; expected a JSON object of API key id to grant, such as \
             {{\"a1b2c3d4e5\": {{\"role\": \"write\", \"prefixes\": [\"flags/\"], \"name\": \"flags-bot\"}}}}"
        )
    })?;
    for (id, grant) in &grants {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "{id:?} is not an API key id (API Gateway's ids are letters and digits)"
            ));
        }
        for prefix in &grant.prefixes {
            check_prefix(prefix).map_err(|reason| format!("key {id}: {reason}"))?;
        }
        if let Some(name) = &grant.name {
            let ok = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_. ".contains(&b));
            if !ok {
                return Err(format!(
                    "key {id}: name {name:?} must be 1 to 128 letters, digits, spaces, '-', '_' or '.'"
                ));
            }
        }
    }
    Ok(grants)
}

/// The rule for a grant's prefixes and the public prefix, for s3kv-local's flags too.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("a prefix must not be empty (leave prefixes out for every key)".into());
    }
    if prefix.len() > crate::key::MAX_KEY_BYTES || !prefix.chars().all(crate::key::xml_safe) {
        return Err(format!(
            "prefix {prefix:?} must be at most 512 bytes with no control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, prefixes: &[&str]) -> Grant {
        Grant {
            role,
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            name: None,
        }
    }

    fn access() -> Access {
        Access::new(
            [
                ("reader1".to_owned(), grant(Role::Read, &[])),
                ("writer1".to_owned(), grant(Role::Write, &[])),
                ("flags1".to_owned(), grant(Role::Write, &["flags/"])),
            ],
            Some("public/".into()),
        )
    }

    #[test]
    fn roles_decide_routes_and_prefixes_decide_items() {
        let access = access();
        assert!(access.authorize(Some("reader1"), Permission::Read).is_ok());
        assert!(matches!(
            access.authorize(Some("reader1"), Permission::Write),
            Err(Denied::ReadOnly { .. })
        ));
        let flags = access.authorize(Some("flags1"), Permission::Write).unwrap();
        assert!(flags.covers("flags/maintenance"));
        assert!(!flags.covers("config/ui"));
        assert!(!flags.covers("flags"));
        assert_eq!(access.authorize(None, Permission::Read), Err(Denied::NoKey));
        assert!(matches!(
            access.authorize(Some("stranger"), Permission::Read),
            Err(Denied::UnknownKey { .. })
        ));
        let public = access.authorize(None, Permission::Public).unwrap();
        assert!(public.covers("public/banner") && !public.covers("flags/x"));
    }

    #[test]
    fn without_grants_every_key_may_do_everything_and_nothing_is_public() {
        let open = Access::unrestricted();
        assert!(open.authorize(None, Permission::Write).is_ok());
        assert_eq!(
            open.authorize(None, Permission::Public),
            Err(Denied::PublicOff)
        );
    }

    #[test]
    fn messages_say_what_the_key_may_do() {
        let access = access();
        let err = access
            .authorize(Some("reader1"), Permission::Write)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "API key reader1 may only read every item; it may not write"
        );
        let flags = access.authorize(Some("flags1"), Permission::Read).unwrap();
        assert_eq!(
            flags.outside("config/ui").to_string(),
            "API key flags1 may read and write items under \"flags/\", not \"config/ui\""
        );
    }

    fn config(vars: &[(&str, &str)]) -> Result<Access, ConfigError> {
        let config = Config::from_lookup(|name| {
            if name == "S3KV_BUCKET" {
                return Some("b".into());
            }
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })?;
        Access::from_config(&config)
    }

    #[test]
    fn grants_come_from_both_variables_and_errors_name_the_variable() {
        let access = config(&[
            (
                "S3KV_API_KEYS",
                r#"{"abc": {"role": "read", "name": "s3kv-read"}}"#,
            ),
            (
                "S3KV_EXTRA_API_KEYS",
                r#"{"def": {"role": "write", "prefixes": ["flags/"]}}"#,
            ),
        ])
        .unwrap();
        let grants = access.grants().unwrap();
        assert_eq!(grants["abc"].name.as_deref(), Some("s3kv-read"));
        assert_eq!(grants["def"].prefixes, vec!["flags/".to_owned()]);
        for (var, value) in [
            ("S3KV_API_KEYS", r#"{"abc": {"role": "admin"}}"#),
            ("S3KV_API_KEYS", r#"["abc"]"#),
            ("S3KV_EXTRA_API_KEYS", r#"{"a-b": {"role": "read"}}"#),
            (
                "S3KV_EXTRA_API_KEYS",
                r#"{"ab": {"role": "read", "prefixes": [""]}}"#,
            ),
            (
                "S3KV_EXTRA_API_KEYS",
                r#"{"ab": {"role": "read", "extra": 1}}"#,
            ),
            ("S3KV_PUBLIC_PREFIX", "bad\u{1}"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{var}=")), "{err}");
        }
        let twice = config(&[
            ("S3KV_API_KEYS", r#"{"abc": {"role": "read"}}"#),
            ("S3KV_EXTRA_API_KEYS", r#"{"abc": {"role": "write"}}"#),
        ])
        .unwrap_err();
        assert!(twice.to_string().contains("granted twice"), "{twice}");
    }

    #[test]
    fn a_public_prefix_alone_keeps_keys_unrestricted() {
        let access = config(&[("S3KV_PUBLIC_PREFIX", "public/")]).unwrap();
        assert_eq!(access.grants(), None);
        assert_eq!(access.public_prefix(), Some("public/"));
        assert!(access.authorize(Some("any"), Permission::Write).is_ok());
    }
}
