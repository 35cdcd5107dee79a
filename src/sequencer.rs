//! S3's `sequencer`: the only order S3 gives between notifications for one key.
//!
//! AWS documents the comparison: right-pad the shorter value with zeros, then compare as strings. Values are
//! hexadecimal; we upper-case them so that the Lua script in Valkey (which compares bytes) and this type agree.

use std::cmp::Ordering;
use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("sequencer {0:?} is not a hexadecimal string")]
pub struct SequencerError(pub String);

/// ```
/// use s3kv::sequencer::Sequencer;
///
/// let s = |v| Sequencer::parse(v).unwrap();
/// assert!(s("0055AED6DCD90281E6") > s("0055AED6DCD90281E5FF")); // padded: ...E60 > ...E5F
/// assert_eq!(s("0A"), s("0a00")); // equal after padding, whatever the case
/// ```
#[derive(Debug, Clone)]
pub struct Sequencer(String);

impl Sequencer {
    pub fn parse(raw: &str) -> Result<Self, SequencerError> {
        if raw.is_empty() || raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SequencerError(raw.to_owned()));
        }
        Ok(Self(raw.to_ascii_uppercase()))
    }

    /// A sequencer for events that s3kv itself generates (local delivery, tests): fixed width, so plain
    /// string order is numeric order.
    pub fn from_counter(n: u64) -> Self {
        Self(format!("{n:016X}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for Sequencer {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        let width = a.len().max(b.len());
        let padded = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(b'0');
        (0..width)
            .map(|i| padded(a, i).cmp(&padded(b, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

/// Equality and hashing follow the padded order: trailing zeros never distinguish two sequencers.
impl PartialEq for Sequencer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Sequencer {}

impl std::hash::Hash for Sequencer {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.trim_end_matches('0').hash(state);
    }
}

impl PartialOrd for Sequencer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Sequencer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Sequencer {
        Sequencer::parse(v).unwrap()
    }

    #[test]
    fn shorter_value_is_right_padded_with_zeros() {
        // Without padding "0055AED6DCD90281E5" < "0055AED6DCD90281E50" would be decided by length alone.
        assert_eq!(
            s("0055AED6DCD90281E5").cmp(&s("0055AED6DCD90281E500")),
            Ordering::Equal
        );
        assert!(s("0055AED6DCD90281E6") > s("0055AED6DCD90281E5FF"));
        assert!(s("0055AED6DCD90281E5") < s("0055AED6DCD90281E501"));
    }

    #[test]
    fn equality_and_hash_agree_with_order() {
        use std::collections::HashSet;
        assert_eq!(s("0A"), s("0A000"));
        let set: HashSet<Sequencer> = [s("0A"), s("0A00"), s("0a0")].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn case_does_not_matter() {
        assert_eq!(s("00ab"), s("00AB"));
    }

    #[test]
    fn counter_sequencers_sort_numerically() {
        assert!(Sequencer::from_counter(9) < Sequencer::from_counter(10));
        assert!(Sequencer::from_counter(255) < Sequencer::from_counter(256));
    }

    #[test]
    fn rejects_non_hex() {
        assert!(Sequencer::parse("").is_err());
        assert!(Sequencer::parse("12G4").is_err());
        assert!(Sequencer::parse("12 4").is_err());
    }
}
