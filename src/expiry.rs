//! Per-item expiry: when an item stops being served, and how that moment travels.
//!
//! A write may ask for one (`?ttl=SECONDS` or `?expiresAt=`); it is stored with the object as user metadata, so
//! it is part of the object: a copy that keeps metadata keeps it, a rewrite without one clears it, and every
//! reader of the object (the syncer, a read from S3, a cache entry built from either) knows it. Readers compare it
//! with the clock on every read, so an item is gone from its expiry second on whatever the cache or the reaper
//! have done yet; the reaper ([`crate::reap`]) then deletes the object, which is what history, `/changes` and
//! watchers see.
//!
//! The reaper finds due items in an index the syncer keeps: one member per (item, expiry) pair, scored by the
//! expiry. A member only says "look at this item then": the reaper deletes nothing the object itself does not
//! say has expired, so a stale or duplicate member costs one read and never a delete.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::key::ItemKey;

/// The furthest ahead an expiry may be: further is almost certainly a unit mistake (milliseconds for seconds).
pub const MAX_AHEAD_SECS: i64 = 10 * 366 * 24 * 60 * 60;

/// The moment an item expires, in whole seconds since the epoch: from this second on it is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(i64);

impl Expiry {
    pub fn at(unix_seconds: i64) -> Self {
        Self(unix_seconds)
    }

    pub fn unix_seconds(self) -> i64 {
        self.0
    }

    /// Whether the item is expired at `now` (seconds since the epoch): from the expiry second on.
    pub fn has_passed(self, now: i64) -> bool {
        now >= self.0
    }

    /// `X-S3kv-Expires-At` and `expiresAt`'s form: RFC 3339 in UTC, whole seconds.
    pub fn rfc3339(self) -> String {
        chrono::DateTime::from_timestamp(self.0, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| self.0.to_string())
    }

    /// The stored form (object metadata, cache entries): decimal seconds. `None` for anything else, which then
    /// reads as no expiry: a hand-edited value must not make an item vanish.
    pub fn parse_stored(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        (!raw.is_empty() && raw.len() <= 19 && raw.bytes().all(|b| b.is_ascii_digit()))
            .then(|| raw.parse().ok().map(Self))
            .flatten()
    }

    pub fn stored(self) -> String {
        self.0.to_string()
    }
}

/// Seconds since the epoch, now: the one clock every expiry is compared with.
pub fn now() -> i64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch, now: a TTL counts from here, so it is never shortened by the part of a second
/// already gone.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How long until `at` begins (zero once it has), to the millisecond: a wait on an item ends at its expiry.
pub fn remaining(at: Expiry) -> std::time::Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = std::time::Duration::from_secs(at.0.max(0) as u64);
    at.saturating_sub(now)
}

/// Why a write's expiry was refused; each says what is allowed, for the 400's message. Not retryable: the
/// request itself is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryError {
    Both,
    BadTtl,
    TtlTooLong,
    BadTime,
    InPast,
    TooFar,
}

impl ExpiryError {
    /// The query parameter at fault.
    pub fn parameter(self) -> &'static str {
        match self {
            ExpiryError::Both | ExpiryError::BadTtl | ExpiryError::TtlTooLong => "ttl",
            ExpiryError::BadTime | ExpiryError::InPast | ExpiryError::TooFar => "expiresAt",
        }
    }

    /// What is wrong and what is allowed, as a `'static` text for [`crate::api::ApiError::InvalidQuery`].
    pub fn reason(self) -> &'static str {
        match self {
            ExpiryError::Both => "send ttl or expiresAt, not both",
            ExpiryError::BadTtl => "must be a whole number of seconds, at least 1",
            ExpiryError::TtlTooLong => "must be at most 10 years (316,224,000 seconds)",
            ExpiryError::BadTime => {
                "must be an RFC 3339 time with a zone (2026-12-31T18:00:00Z) or Unix seconds"
            }
            ExpiryError::InPast => "is not in the future",
            ExpiryError::TooFar => "is more than 10 years ahead",
        }
    }
}

impl std::fmt::Display for ExpiryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.parameter(), self.reason())
    }
}

impl std::error::Error for ExpiryError {}

/// A write's `ttl` and `expiresAt` query parameters, as sent, into the expiry to store (`None`: none, which also
/// clears one the item had). `now_ms` is milliseconds since the epoch; a TTL ends at the first whole second at
/// least that many seconds from it.
pub fn from_request(
    ttl: Option<&str>,
    expires_at: Option<&str>,
    now_ms: i64,
) -> Result<Option<Expiry>, ExpiryError> {
    let now = now_ms.div_euclid(1000);
    match (ttl, expires_at) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ExpiryError::Both),
        (Some(ttl), None) => {
            let ttl = ttl.trim();
            let seconds: i64 =
                (!ttl.is_empty() && ttl.len() <= 19 && ttl.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| ttl.parse().ok())
                    .flatten()
                    .filter(|s| *s >= 1)
                    .ok_or(ExpiryError::BadTtl)?;
            if seconds > MAX_AHEAD_SECS {
                return Err(ExpiryError::TtlTooLong);
            }
            Ok(Some(Expiry(
                (now_ms + seconds * 1000 + 999).div_euclid(1000),
            )))
        }
        (None, Some(raw)) => {
            let at = parse_time(raw).ok_or(ExpiryError::BadTime)?;
            if at <= now {
                Err(ExpiryError::InPast)
            } else if at - now > MAX_AHEAD_SECS {
                Err(ExpiryError::TooFar)
            } else {
                Ok(Some(Expiry(at)))
            }
        }
    }
}

/// RFC 3339 (with a zone; fractions of a second are dropped, so the expiry is the second it falls in) or Unix
/// seconds.
fn parse_time(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.len() <= 12 && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse().ok();
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.timestamp())
}

/// The reaper index's member for `key` expiring `at`: `<seconds>:<key>`. Digits first, so the first `:` ends them
/// whatever the key holds.
pub fn member(key: &ItemKey, at: Expiry) -> String {
    format!("{}:{}", at.0, key.as_str())
}

/// A member's item and expiry; `None` for one this code never wrote.
pub fn parse_member(member: &str) -> Option<(ItemKey, Expiry)> {
    let (at, key) = member.split_once(':')?;
    Some((ItemKey::parse(key).ok()?, Expiry::parse_stored(at)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const NOW_MS: i64 = NOW * 1000;

    #[test]
    fn ttls_count_from_now_and_must_be_whole_positive_seconds() {
        assert_eq!(
            from_request(Some("2"), None, NOW_MS),
            Ok(Some(Expiry(NOW + 2)))
        );
        // Never shorter than asked: part of a second gone rounds the end up.
        assert_eq!(
            from_request(Some("2"), None, NOW_MS + 1),
            Ok(Some(Expiry(NOW + 3)))
        );
        assert_eq!(from_request(None, None, NOW_MS), Ok(None));
        for bad in [
            "0",
            "-1",
            "1.5",
            "",
            " ",
            "1e3",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(
                from_request(Some(bad), None, NOW_MS),
                Err(ExpiryError::BadTtl),
                "{bad:?}"
            );
        }
        let ten_years = MAX_AHEAD_SECS.to_string();
        assert!(from_request(Some(&ten_years), None, NOW_MS).is_ok());
        let more = (MAX_AHEAD_SECS + 1).to_string();
        assert_eq!(
            from_request(Some(&more), None, NOW_MS),
            Err(ExpiryError::TtlTooLong)
        );
        assert_eq!(
            from_request(Some("5"), Some("1900000000"), NOW_MS),
            Err(ExpiryError::Both)
        );
    }

    #[test]
    fn expiry_times_are_rfc3339_or_unix_seconds_in_the_future() {
        let at = |raw: &str| from_request(None, Some(raw), NOW_MS + 500);
        assert_eq!(at("1800000060"), Ok(Some(Expiry(NOW + 60))));
        assert_eq!(at("2027-01-15T08:01:00Z"), Ok(Some(Expiry(NOW + 60))));
        assert_eq!(
            at("2027-01-15T10:01:00.750+02:00"),
            Ok(Some(Expiry(NOW + 60)))
        );
        assert_eq!(at("2027-01-15T08:00:00Z"), Err(ExpiryError::InPast));
        assert_eq!(at("1800000000"), Err(ExpiryError::InPast));
        assert_eq!(at("2001-01-01T00:00:00Z"), Err(ExpiryError::InPast));
        assert_eq!(at("2100-01-01T00:00:00Z"), Err(ExpiryError::TooFar));
        for bad in [
            "tomorrow",
            "2027-01-15",
            "2027-01-15T08:00:00",
            "",
            "1.5",
            "-5",
        ] {
            assert_eq!(at(bad), Err(ExpiryError::BadTime), "{bad:?}");
        }
    }

    #[test]
    fn expiry_starts_at_its_second_and_prints_as_rfc3339() {
        let at = Expiry(1_445_412_480);
        assert!(!at.has_passed(1_445_412_479));
        assert!(at.has_passed(1_445_412_480));
        assert_eq!(at.rfc3339(), "2015-10-21T07:28:00Z");
        assert_eq!(Expiry::parse_stored(&at.stored()), Some(at));
        for foreign in ["", "x", "-1", "1.5", "12345678901234567890"] {
            assert_eq!(Expiry::parse_stored(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn members_round_trip_whatever_the_key_holds() {
        let key = ItemKey::parse("flags/a:b:c").unwrap();
        let member = member(&key, Expiry(NOW));
        assert_eq!(member, "1800000000:flags/a:b:c");
        assert_eq!(parse_member(&member), Some((key, Expiry(NOW))));
        for foreign in ["", "x:flags/a", "1800000000", "1:"] {
            assert_eq!(parse_member(foreign), None, "{foreign:?}");
        }
    }
}
