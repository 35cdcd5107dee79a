//! The stack's API keys, as given on the command line and as API Gateway would know them. Apart from `lib.rs`
//! (which keeps the options and the stack) so that each stays under ~600 lines, and the key rules are read in one
//! place.

use crate::{LocalError, Options};

/// An API key given on the command line: its x-api-key value and the item key prefixes it is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub value: String,
    pub prefixes: Vec<String>,
}

/// The lengths API Gateway takes for an imported or given key value: a key that works here can be imported there
/// as it is, and one rule holds for `--api-key`, `--read-key` and `--write-key` alike.
pub const KEY_LENGTHS: std::ops::RangeInclusive<usize> = 20..=128;

/// One key value as API Gateway would take it (see [`KEY_LENGTHS`]); visible ASCII, since it travels in a header
/// and `:` and `,` separate a `--write-key`'s prefixes.
pub(crate) fn parse_key_value(value: &str) -> Result<String, String> {
    if !KEY_LENGTHS.contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "a key must be {} to {} visible ASCII characters, as API Gateway requires (got {} characters)",
            KEY_LENGTHS.start(),
            KEY_LENGTHS.end(),
            value.chars().count()
        ));
    }
    Ok(value.to_owned())
}

pub(crate) fn parse_key_spec(raw: &str) -> Result<KeySpec, String> {
    let (value, prefixes) = match raw.split_once(':') {
        Some((value, prefixes)) => (value, prefixes.split(',').map(str::to_owned).collect()),
        None => (raw, Vec::new()),
    };
    let value = parse_key_value(value)?;
    for prefix in &prefixes {
        s3kv::access::check_prefix(prefix)?;
    }
    Ok(KeySpec { value, prefixes })
}

/// One API key of the local stack, as API Gateway would know it: the value sent in x-api-key, its key id, and
/// what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKey {
    pub value: String,
    pub id: String,
    pub grant: s3kv::access::Grant,
}

/// The stack's keys: `--api-key` (full access), then every `--read-key` and `--write-key`, with ids like API
/// Gateway's (letters and digits) and names saying where they came from.
/// One value given twice would make the gateway pick one of its roles: an error instead.
pub(crate) fn local_keys(options: &Options, api_key: &str) -> Result<Vec<LocalKey>, LocalError> {
    use s3kv::access::{Grant, Role};
    let full = KeySpec {
        value: api_key.to_owned(),
        prefixes: Vec::new(),
    };
    let specs = std::iter::once(("full", Role::Write, 0, &full))
        .chain(
            options
                .read_keys
                .iter()
                .enumerate()
                .map(|(i, k)| ("read", Role::Read, i + 1, k)),
        )
        .chain(
            options
                .write_keys
                .iter()
                .enumerate()
                .map(|(i, k)| ("write", Role::Write, i + 1, k)),
        );
    let keys = specs
        .map(|(kind, role, n, spec)| {
            let (id, name) = match n {
                0 => ("local0".to_owned(), "api-key".to_owned()),
                n => (format!("local{kind}{n}"), format!("{kind}-key-{n}")),
            };
            LocalKey {
                value: spec.value.clone(),
                id,
                grant: Grant {
                    role,
                    prefixes: spec.prefixes.clone(),
                    name: Some(name),
                },
            }
        })
        .collect::<Vec<_>>();
    for (i, key) in keys.iter().enumerate() {
        if keys[..i].iter().any(|k| k.value == key.value) {
            return Err(LocalError::Keys(format!(
                "the key {} is given twice (--api-key, --read-key, --write-key); give each key one role",
                key.value
            )));
        }
    }
    if let Some(prefix) = options.public_prefix.as_deref().filter(|p| !p.is_empty()) {
        s3kv::access::check_prefix(prefix)
            .map_err(|reason| LocalError::Keys(format!("--public-prefix: {reason}")))?;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tests::parse;

    #[test]
    fn keys_take_roles_and_prefixes() {
        let o = parse(&[
            "--read-key",
            "read-key-0123456789ab",
            "--write-key",
            "write-key-0123456789a:flags/,config/",
            "--write-key=other-write-0123456789",
            "--public-prefix",
            "public/",
        ])
        .unwrap();
        let keys = local_keys(&o, "full-key-0123456789ab").unwrap();
        let summary: Vec<(&str, &str, s3kv::access::Role, Vec<String>)> = keys
            .iter()
            .map(|k| {
                (
                    k.value.as_str(),
                    k.id.as_str(),
                    k.grant.role,
                    k.grant.prefixes.clone(),
                )
            })
            .collect();
        use s3kv::access::Role::{Read, Write};
        assert_eq!(
            summary,
            vec![
                ("full-key-0123456789ab", "local0", Write, vec![]),
                ("read-key-0123456789ab", "localread1", Read, vec![]),
                (
                    "write-key-0123456789a",
                    "localwrite1",
                    Write,
                    vec!["flags/".to_owned(), "config/".to_owned()]
                ),
                ("other-write-0123456789", "localwrite2", Write, vec![]),
            ]
        );
        assert_eq!(o.public_prefix.as_deref(), Some("public/"));
        assert!(parse(&["--read-key", "short"]).is_err());
        // The walkthrough's keys (docs/src/running-locally.md) are accepted, and one rule holds for every kind of
        // key.
        for args in [
            &["--api-key", "local-dev-full-access"][..],
            &["--read-key", "local-dev-browser-key"],
            &["--write-key", "local-dev-bot-writer:flags/"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        for args in [
            &["--api-key", "devkey"][..],
            &["--api-key", "nineteen-characters"],
            &["--read-key", "nineteen-characters"],
            &["--write-key", "nineteen-characters:flags/"],
        ] {
            let error = parse(args).unwrap_err().to_string();
            assert!(
                error.contains("20 to 128 visible ASCII characters"),
                "{args:?}: {error}"
            );
        }
        assert!(parse(&["--api-key", &"k".repeat(129)]).is_err());
        assert!(parse(&["--write-key", "write-key-0123456789a:flags/,"]).is_err());

        // One value, two roles: refused, naming the value.
        let twice = parse(&[
            "--read-key",
            "same-key-0123456789ab",
            "--write-key",
            "same-key-0123456789ab",
        ])
        .unwrap();
        let error = local_keys(&twice, "full-key-0123456789ab")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("same-key-0123456789ab is given twice"),
            "{error}"
        );
        let full_twice = parse(&["--read-key", "full-key-0123456789ab"]).unwrap();
        assert!(local_keys(&full_twice, "full-key-0123456789ab").is_err());
    }
}
