//! The one string a cache entry is stored as, and its reading: a read of an item is one GET and the parsing here,
//! so the layout and its parsers live together, beside the Lua script that parses its first three fields
//! (`cache.lua`); the limits the two share stay in the parent module. Apart from it so that each file stays under
//! ~600 lines.

use bytes::Bytes;

use super::HEADER_FIELD_MAX;
use crate::audit::Provenance;
use crate::expiry::Expiry;
use crate::ports::{CacheError, CacheLookup, Etag, Marks, Object, Snapshot, Unservable};

/// A cache entry as stored: one string `sequencer \n etag \n tombstone \n [@modified \t writer \n] body`, so that
/// a read is one GET, the cheapest command Valkey has (a hash with the same fields costs a third more CPU per read
/// in fred and Valkey together; see BENCHMARKS.md). Empty header fields mean absent: reader fills carry no
/// sequencer, tombstones neither etag nor body. cache.lua parses the first three fields and nothing else.
///
/// The provenance line (who wrote the item, and when) came later: it starts with `@`, which no JSON document does,
/// so an entry written before it existed still decodes, as one without provenance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub sequencer: String,
    pub etag: String,
    pub tombstone: String,
    pub provenance: Provenance,
    pub body: Bytes,
}

impl Entry {
    pub fn encode(&self) -> Result<Bytes, CacheError> {
        let fields = [&self.sequencer, &self.etag, &self.tombstone];
        if let Some(bad) = fields
            .iter()
            .find(|f| f.len() > HEADER_FIELD_MAX || f.contains('\n'))
        {
            return Err(CacheError::Unexpected(format!(
                "cannot store {bad:?} in a cache entry header (a newline, or over {HEADER_FIELD_MAX} bytes)"
            )));
        }
        let provenance = provenance_line(&self.provenance)?;
        let header: usize = fields.iter().map(|f| f.len() + 1).sum();
        let mut out = Vec::with_capacity(header + provenance.len() + self.body.len());
        for field in fields {
            out.extend_from_slice(field.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(provenance.as_bytes());
        out.extend_from_slice(&self.body);
        Ok(out.into())
    }

    /// `None` for anything that is not an entry (another program's value under our prefix): the reader then
    /// answers from S3, and the next write replaces it.
    pub fn decode(raw: &Bytes) -> Option<Self> {
        let ([sequencer, etag, tombstone], rest) = split(raw)?;
        let (provenance, body) = split_provenance(rest)?;
        Some(Self {
            sequencer: sequencer.to_owned(),
            etag: etag.to_owned(),
            tombstone: tombstone.to_owned(),
            provenance,
            body,
        })
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let some = |f: &String| (!f.is_empty()).then(|| f.clone());
        Snapshot {
            sequencer: some(&self.sequencer),
            etag: some(&self.etag),
            tombstone: some(&self.tombstone),
        }
    }
}

/// `@modified \t writer \n`, or `@modified \t expires \t writer \n` for an item that expires, or nothing when
/// nothing is known. The expiry comes before the writer so that it lies within the first [`HEADER_READ_MAX`](super::HEADER_READ_MAX)
/// bytes of every entry, where a listing's short read finds it.
fn provenance_line(provenance: &Provenance) -> Result<String, CacheError> {
    if provenance.is_empty() {
        return Ok(String::new());
    }
    let writer = provenance.writer.as_deref().unwrap_or_default();
    if writer.len() > HEADER_FIELD_MAX || writer.contains(['\n', '\t']) {
        return Err(CacheError::Unexpected(format!(
            "cannot store writer {writer:?} in a cache entry (a newline or tab, or over {HEADER_FIELD_MAX} bytes)"
        )));
    }
    let modified = provenance
        .modified
        .map(|m| m.to_string())
        .unwrap_or_default();
    Ok(match provenance.expires {
        Some(at) => format!("@{modified}\t{}\t{writer}\n", at.stored()),
        None => format!("@{modified}\t{writer}\n"),
    })
}

/// The provenance line, if the entry has one, and the body after it; `None` if the line is malformed.
fn split_provenance(rest: Bytes) -> Option<(Provenance, Bytes)> {
    if rest.first() != Some(&b'@') {
        return Some((Provenance::default(), rest));
    }
    let end = rest.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&rest[1..end]).ok()?;
    let (modified, writer) = line.split_once('\t')?;
    // A writer never holds a tab, so a second one means the line carries an expiry.
    let (expires, writer) = match writer.split_once('\t') {
        Some((at, writer)) => (Some(Expiry::parse_stored(at)?), writer),
        None => (None, writer),
    };
    let provenance = Provenance {
        writer: (!writer.is_empty()).then(|| writer.to_owned()),
        modified: match modified {
            "" => None,
            m => Some(m.parse().ok()?),
        },
        expires,
    };
    Some((provenance, rest.slice(end + 1..)))
}

/// An entry's three header fields (borrowed) and the rest; `None` if `raw` is not an entry.
fn split(raw: &Bytes) -> Option<([&str; 3], Bytes)> {
    let mut rest = raw.as_ref();
    let mut fields = [""; 3];
    for field in &mut fields {
        let end = rest.iter().position(|b| *b == b'\n')?;
        *field = std::str::from_utf8(&rest[..end]).ok()?;
        rest = &rest[end + 1..];
    }
    Some((fields, raw.slice(raw.len() - rest.len()..)))
}

/// A value under our prefix that is not an entry (another program's, or a hash from an s3kv before entries were
/// strings) reads as a miss: the reader answers from S3, and its fill replaces the value. The hot path of every
/// read, so it copies nothing but the ETag and the short provenance line.
pub(super) fn decode_lookup(raw: Option<Bytes>) -> CacheLookup {
    let Some(([_, etag, tombstone], rest)) = raw.as_ref().and_then(split) else {
        return CacheLookup::Miss;
    };
    if !tombstone.is_empty() {
        return Unservable::from_reason(tombstone)
            .map_or(CacheLookup::Tombstone, CacheLookup::Unservable);
    }
    match split_provenance(rest) {
        Some((provenance, body)) => CacheLookup::Hit(Object {
            body,
            etag: Etag::new(etag),
            provenance,
        }),
        None => CacheLookup::Miss,
    }
}

/// What an entry's first [`HEADER_READ_MAX`](super::HEADER_READ_MAX) bytes say about it: its tombstone's reason, and the expiry from its
/// provenance line (whose writer may be cut off; the expiry comes before it, so it never is).
pub(super) fn marks(head: Option<&Bytes>) -> Marks {
    let Some(([_, etag, tombstone], rest)) = head.and_then(split) else {
        return Marks::default();
    };
    let line = rest.strip_prefix(b"@").unwrap_or_default();
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut fields = line.split(|b| *b == b'\t');
    let expires = match (fields.next(), fields.next(), fields.next()) {
        (Some(_), Some(at), Some(_)) => std::str::from_utf8(at).ok().and_then(Expiry::parse_stored),
        _ => None,
    };
    Marks {
        unservable: Unservable::from_reason(tombstone),
        expires,
        etag: (!etag.is_empty()).then(|| Etag::new(etag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::valkey::HEADER_READ_MAX;

    #[test]
    fn entries_round_trip_and_bodies_may_hold_newlines() {
        let entry = Entry {
            sequencer: "0055AED6DCD90281E5".into(),
            etag: "d41d8cd98f00b204e9800998ecf8427e-2".into(),
            tombstone: String::new(),
            provenance: Provenance::default(),
            body: Bytes::from_static(b"{\"a\":\n\"b\\n\"}\n"),
        };
        let raw = entry.encode().unwrap();
        assert!(raw.starts_with(b"0055AED6DCD90281E5\nd41d8cd98f00b204e9800998ecf8427e-2\n\n{"));
        assert_eq!(Entry::decode(&raw), Some(entry.clone()));
        let audited = Entry {
            provenance: Provenance {
                writer: Some("key=a1; name=bot; request=r-1".into()),
                modified: Some(1_700_000_000),
                expires: None,
            },
            ..entry
        };
        let raw = audited.encode().unwrap();
        assert!(
            raw.ends_with(b"\n@1700000000\tkey=a1; name=bot; request=r-1\n{\"a\":\n\"b\\n\"}\n")
        );
        assert_eq!(Entry::decode(&raw), Some(audited.clone()));
        let CacheLookup::Hit(object) = decode_lookup(Some(raw)) else {
            panic!("not a hit")
        };
        assert_eq!(object.provenance, audited.provenance);
        assert_eq!(object.body, audited.body);
        let tombstone = Entry {
            tombstone: "deleted".into(),
            ..Entry::default()
        };
        assert_eq!(Entry::decode(&tombstone.encode().unwrap()), Some(tombstone));
    }

    #[test]
    fn an_expiry_rides_in_the_provenance_line_where_a_listing_finds_it() {
        let at = Expiry::at(1_800_000_000);
        let entry = Entry {
            sequencer: "0055AED6DCD90281E5".into(),
            etag: "e".repeat(HEADER_FIELD_MAX),
            tombstone: String::new(),
            provenance: Provenance {
                writer: Some("w".repeat(HEADER_FIELD_MAX)),
                modified: Some(1_700_000_000),
                expires: Some(at),
            },
            body: Bytes::from_static(b"{\"a\":\"\t\"}"),
        };
        let raw = entry.encode().unwrap();
        assert_eq!(Entry::decode(&raw), Some(entry.clone()));
        let CacheLookup::Hit(object) = decode_lookup(Some(raw.clone())) else {
            panic!("not a hit")
        };
        assert_eq!(object.provenance.expires, Some(at));
        // A listing reads only the head: the longest etag and writer still leave the expiry in it.
        let head = raw.slice(..HEADER_READ_MAX);
        let marked = marks(Some(&head));
        assert_eq!(marked.expires, Some(at));
        assert_eq!(marked.etag, Some(Etag::new(&entry.etag)));
        // Entries without one, from before expiry existed or not, read as none, even with a tab in the body.
        let plain = Entry {
            provenance: Provenance {
                expires: None,
                ..entry.provenance.clone()
            },
            ..entry
        };
        let raw = plain.encode().unwrap();
        assert_eq!(Entry::decode(&raw), Some(plain));
        assert_eq!(marks(Some(&raw)).expires, None);
    }

    #[test]
    fn header_fields_cannot_break_the_layout() {
        let with = |etag: String| Entry {
            etag,
            ..Entry::default()
        };
        assert!(with("a\nb".into()).encode().is_err());
        assert!(with("e".repeat(HEADER_FIELD_MAX + 1)).encode().is_err());
        assert!(with("e".repeat(HEADER_FIELD_MAX)).encode().is_ok());
        for foreign in [&b""[..], b"plain value", b"a\nb", b"\xff\n\n\n{}"] {
            assert_eq!(Entry::decode(&Bytes::copy_from_slice(foreign)), None);
        }
    }
}
