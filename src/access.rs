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

    /// From `S3KV_API_KEYS`, `S3KV_EXTRA_API_KEYS` and `S3KV_PUBLIC_PREFIX`, logging each problem (see [`Access::load`]).
    /// A function never fails to start over a grant: a typo in one would otherwise answer every call with 502.
    pub fn from_config(config: &Config) -> Self {
        let (access, problems) = Self::load(config);
        for problem in &problems {
            tracing::error!(error = %problem, "access configuration: this entry is ignored and its key denied");
        }
        access
    }

    /// The grants that can be used, and what could not, each naming its variable. Fails closed: an entry that
    /// cannot be read denies its key (the others keep working), a variable that is not JSON denies all of its
    /// keys, an id granted twice is denied in both, and a public prefix that breaks the rules leaves public reads
    /// off. Once either grants variable is set, keys are checked, even if nothing in it could be read.
    pub fn load(config: &Config) -> (Self, Vec<ConfigError>) {
        let mut problems = Vec::new();
        let mut grants: Option<BTreeMap<String, Grant>> = None;
        let mut twice = Vec::new();
        for (var, raw) in [
            ("S3KV_API_KEYS", &config.api_keys),
            ("S3KV_EXTRA_API_KEYS", &config.extra_api_keys),
        ] {
            let Some(raw) = raw else { continue };
            let all = grants.get_or_insert_with(BTreeMap::new);
            let invalid = |reason: String| ConfigError::Invalid {
                var,
                value: raw.clone(),
                reason,
            };
            let (parsed, bad) = parse_grants(raw);
            problems.extend(bad.into_iter().map(invalid));
            for (id, grant) in parsed {
                if all.contains_key(&id) {
                    problems.push(invalid(format!(
                        "key id {id} is granted twice; it is denied"
                    )));
                    twice.push(id);
                    continue;
                }
                all.insert(id, grant);
            }
        }
        if let Some(all) = &mut grants {
            for id in &twice {
                all.remove(id);
            }
        }
        let public_prefix = config.public_prefix.clone().filter(|prefix| {
            let checked = check_prefix(prefix);
            if let Err(reason) = &checked {
                problems.push(ConfigError::Invalid {
                    var: "S3KV_PUBLIC_PREFIX",
                    value: prefix.clone(),
                    reason: format!("{reason}; public reads are off"),
                });
            }
            checked.is_ok()
        });
        // A public prefix alone does not turn key checks on: with no grants, keys stay unrestricted.
        (
            Self {
                grants,
                public_prefix,
            },
            problems,
        )
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

/// The grants in `raw` that are sound, and why each other entry is not (a `raw` that is not a JSON object is one
/// reason and no grants).
fn parse_grants(raw: &str) -> (BTreeMap<String, Grant>, Vec<String>) {
    let entries: BTreeMap<String, serde_json::Value> = match serde_json::from_str(raw) {
        Ok(entries) => entries,
        Err(e) => {
            let reason = format!(
                "{e}; expected a JSON object of API key id to grant, such as \
                 {{\"a1b2c3d4e5\": {{\"role\": \"write\", \"prefixes\": [\"flags/\"], \"name\": \"flags-bot\"}}}}; \
                 every key in it is denied"
            );
            return (BTreeMap::new(), vec![reason]);
        }
    };
    let mut grants = BTreeMap::new();
    let mut problems = Vec::new();
    for (id, value) in entries {
        match parse_grant(&id, value) {
            Ok(grant) => {
                grants.insert(id, grant);
            }
            Err(reason) => problems.push(format!("{reason}; key {id} is denied")),
        }
    }
    (grants, problems)
}

fn parse_grant(id: &str, value: serde_json::Value) -> Result<Grant, String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "{id:?} is not an API key id (API Gateway's ids are letters and digits)"
        ));
    }
    let grant: Grant = serde_json::from_value(value).map_err(|e| format!("key {id}: {e}"))?;
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
    Ok(grant)
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

    fn config(vars: &[(&str, &str)]) -> (Access, Vec<ConfigError>) {
        let config = Config::from_lookup(|name| {
            if name == "S3KV_BUCKET" {
                return Some("b".into());
            }
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        Access::load(&config)
    }

    #[test]
    fn grants_come_from_both_variables() {
        let (access, problems) = config(&[
            (
                "S3KV_API_KEYS",
                r#"{"abc": {"role": "read", "name": "s3kv-read"}}"#,
            ),
            (
                "S3KV_EXTRA_API_KEYS",
                r#"{"def": {"role": "write", "prefixes": ["flags/"]}}"#,
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let grants = access.grants().unwrap();
        assert_eq!(grants["abc"].name.as_deref(), Some("s3kv-read"));
        assert_eq!(grants["def"].prefixes, vec!["flags/".to_owned()]);
    }

    #[test]
    fn a_bad_entry_denies_its_key_names_its_variable_and_leaves_the_others_working() {
        let good = r#""good": {"role": "read"}"#;
        for (var, bad) in [
            ("S3KV_API_KEYS", r#""abc": {"role": "admin"}"#),
            ("S3KV_EXTRA_API_KEYS", r#""a-b": {"role": "read"}"#),
            (
                "S3KV_EXTRA_API_KEYS",
                r#""ab": {"role": "read", "prefixes": [""]}"#,
            ),
            (
                "S3KV_EXTRA_API_KEYS",
                r#""ab": {"role": "read", "extra": 1}"#,
            ),
            ("S3KV_API_KEYS", r#""ab": {"role": "read", "name": "a/b"}"#),
        ] {
            let (access, problems) = config(&[(var, &format!("{{{bad}, {good}}}"))]);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            let problem = problems[0].to_string();
            assert!(
                problem.starts_with(&format!("{var}=")) && problem.contains("denied"),
                "{problem}"
            );
            assert!(
                access.authorize(Some("good"), Permission::Read).is_ok(),
                "{bad}"
            );
            for denied in ["abc", "a-b", "ab"] {
                assert!(
                    access.authorize(Some(denied), Permission::Read).is_err(),
                    "{bad}"
                );
            }
        }
    }

    #[test]
    fn a_variable_that_is_not_json_denies_its_keys_but_never_opens_the_api() {
        // Only the broken variable set: keys are still checked, and none may do anything.
        let (access, problems) =
            config(&[("S3KV_EXTRA_API_KEYS", r#"{"abc": {"role": "read"},}"#)]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().starts_with("S3KV_EXTRA_API_KEYS="));
        assert!(access.authorize(Some("abc"), Permission::Read).is_err());
        assert!(access
            .authorize(Some("anything"), Permission::Read)
            .is_err());
        // Beside a sound variable: its keys keep working.
        let (access, _) = config(&[
            ("S3KV_API_KEYS", r#"{"abc": {"role": "write"}}"#),
            ("S3KV_EXTRA_API_KEYS", "[\"def\"]"),
        ]);
        assert!(access.authorize(Some("abc"), Permission::Write).is_ok());
        assert!(access.authorize(Some("def"), Permission::Read).is_err());
    }

    #[test]
    fn an_id_granted_twice_is_denied_and_a_bad_public_prefix_turns_public_reads_off() {
        let (access, problems) = config(&[
            (
                "S3KV_API_KEYS",
                r#"{"abc": {"role": "read"}, "xyz": {"role": "read"}}"#,
            ),
            ("S3KV_EXTRA_API_KEYS", r#"{"abc": {"role": "write"}}"#),
            ("S3KV_PUBLIC_PREFIX", "bad\u{1}"),
        ]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].contains("granted twice"), "{text:?}");
        assert!(
            text[1].starts_with("S3KV_PUBLIC_PREFIX=") && text[1].contains("public reads are off")
        );
        assert!(access.authorize(Some("abc"), Permission::Read).is_err());
        assert!(access.authorize(Some("xyz"), Permission::Read).is_ok());
        assert!(access.authorize(None, Permission::Public).is_err());
    }

    #[test]
    fn a_public_prefix_alone_keeps_keys_unrestricted() {
        let (access, _) = config(&[("S3KV_PUBLIC_PREFIX", "public/")]);
        assert_eq!(access.grants(), None);
        assert_eq!(access.public_prefix(), Some("public/"));
        assert!(access.authorize(Some("any"), Permission::Write).is_ok());
    }
}
