//! The audit trail and queue throughput: read-only views over the
//! histories Baton already keeps.
//!
//! The trail is not a table of its own. It is the union of three
//! append-only histories, each entry in one **area**:
//! - `item`: every event of every work item (`item_events`: enqueued,
//!   claimed, extended, released, expired, parked, completed, escalated,
//!   revoked, requeued);
//! - `lock`: every event of every lock resource (`lock_events`: granted,
//!   extended, upgraded, downgraded, released, expired, forced);
//! - `record`: every version of every record (`record_versions`: create,
//!   replace, patch, merge, delete, forced).
//!
//! Entries come newest first in one total order — time, then area
//! (record, lock, item), then within the area (records by collection, key
//! and version; items and locks by the order recorded), each descending —
//! and a page continues strictly after the [`AuditCursor`] of the last
//! entry of the page before (keyset pagination: stable while new entries
//! arrive).
//!
//! Throughput counts the items finished (completed with any outcome) in a
//! queue per time bucket. An escalated item is counted by the queue that
//! finally completes it, not by the one that escalated it.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::{from_millis, to_millis};
use crate::{Error, Result, Timestamp};

/// Limits of audit queries and throughput charts.
pub mod audit_limits {
    /// Largest page of the audit trail.
    pub const MAX_PAGE: u32 = 500;
    /// Longest `subject` or `actor` filter, bytes.
    pub const MAX_FILTER_BYTES: usize = 512;
    /// Most buckets in one throughput answer.
    pub const MAX_BUCKETS: u64 = 1440;
    /// Shortest throughput bucket, seconds.
    pub const MIN_BUCKET_SECONDS: u64 = 1;
    /// Longest throughput bucket, seconds (one day).
    pub const MAX_BUCKET_SECONDS: u64 = 86_400;
    /// Longest throughput range, minutes (seven days).
    pub const MAX_RANGE_MINUTES: u64 = 7 * 24 * 60;
}

/// Which history an audit entry comes from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AuditArea {
    /// An event of a work item.
    Item,
    /// An event of a lock on a resource.
    Lock,
    /// A version of a record.
    Record,
}

impl AuditArea {
    /// The name used in the API and in cursors.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditArea::Item => "item",
            AuditArea::Lock => "lock",
            AuditArea::Record => "record",
        }
    }
}

impl FromStr for AuditArea {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "item" => Ok(AuditArea::Item),
            "lock" => Ok(AuditArea::Lock),
            "record" => Ok(AuditArea::Record),
            _ => Err(Error::invalid("area", "one of item, lock, record")),
        }
    }
}

/// Where an audit entry stands in the trail's order; a page asked for
/// `before` a cursor starts with the entry right after it.
///
/// As text (in the API): `{at in ms}.{area}.{seq}` for items and locks
/// (`seq`: the event's number), `{at in ms}.record.{version}.{collection}/{key}`
/// for records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuditCursor {
    /// The entry's time.
    pub at: DateTime<Utc>,
    /// Its area.
    pub area: AuditArea,
    /// Items and locks: the event's number in its history; records: the
    /// version.
    pub seq: i64,
    /// Records: `collection/key`; empty otherwise.
    pub key: String,
}

impl AuditCursor {
    /// Records: the collection and the key.
    pub fn record(&self) -> (&str, &str) {
        self.key.split_once('/').unwrap_or((&self.key, ""))
    }

    /// How rows of `area` at the cursor's very instant relate to it.
    pub fn at_same_instant(&self, area: AuditArea) -> SameInstant {
        match area.cmp(&self.area) {
            Ordering::Less => SameInstant::All,
            Ordering::Greater => SameInstant::None,
            Ordering::Equal => SameInstant::Below,
        }
    }
}

/// Which rows of one area, at the cursor's instant, come after the cursor
/// (see [`AuditCursor::at_same_instant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameInstant {
    /// Every one (the area sorts below the cursor's).
    All,
    /// None (the area sorts above the cursor's).
    None,
    /// Those below the cursor within the area: a smaller `seq` (items,
    /// locks), or a smaller (collection, key, version) (records).
    Below,
}

impl Ord for AuditCursor {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.area, self.record(), self.seq).cmp(&(
            other.at,
            other.area,
            other.record(),
            other.seq,
        ))
    }
}

impl PartialOrd for AuditCursor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            to_millis(self.at),
            self.area.as_str(),
            self.seq
        )?;
        if self.area == AuditArea::Record {
            write!(f, ".{}", self.key)?;
        }
        Ok(())
    }
}

impl FromStr for AuditCursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("before", "not a cursor from an earlier page");
        let mut parts = s.splitn(4, '.');
        let at: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let area: AuditArea = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let seq: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let key = parts.next().unwrap_or("").to_owned();
        let fits = match area {
            AuditArea::Record => key.split_once('/').is_some_and(|(c, k)| {
                crate::CollectionName::new(c).is_ok() && crate::RecordKey::new(k).is_ok()
            }),
            _ => key.is_empty(),
        };
        if !fits || DateTime::from_timestamp_millis(at).is_none() {
            return Err(bad());
        }
        Ok(Self {
            at: from_millis(at),
            area,
            seq,
            key,
        })
    }
}

impl Serialize for AuditCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuditCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for AuditCursor {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "Where an entry stands in the trail; pass it as `before` for the next page",
            ))
            .into()
    }
}

impl ToSchema for AuditCursor {}

/// What part of the trail to read.
///
/// `subject` matches, exactly (byte for byte), any of:
/// - a **queue** name: the events of every item while it was in that
///   queue;
/// - an **item id** (decimal): that item's events;
/// - a **lock resource** name: the lock events of that resource;
/// - `collection/key`: that record's versions; a **collection** name
///   alone: the versions of all its records.
///
/// A subject may match in several areas at once (a queue and a resource
/// of the same name): entries of each are returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFilter {
    /// Only entries by this principal (entries by the clock, such as
    /// expiries, have no actor and never match).
    pub actor: Option<String>,
    /// Only entries about this subject (see above).
    pub subject: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub until: Option<DateTime<Utc>>,
    /// Most entries returned, 1..=[`audit_limits::MAX_PAGE`].
    pub limit: u32,
    /// Only entries after this cursor in the trail's order (the next
    /// page).
    pub before: Option<AuditCursor>,
}

impl AuditFilter {
    /// Refuses a filter outside the limits with `Error::Invalid` naming
    /// the field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=audit_limits::MAX_PAGE).contains(&self.limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be 1..={}", audit_limits::MAX_PAGE),
            ));
        }
        for (field, v) in [("actor", &self.actor), ("subject", &self.subject)] {
            if let Some(v) = v
                && (v.is_empty() || v.len() > audit_limits::MAX_FILTER_BYTES)
            {
                return Err(Error::invalid(
                    field,
                    format!("1 to {} bytes", audit_limits::MAX_FILTER_BYTES),
                ));
            }
        }
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            return Err(Error::invalid("until", "must be after since"));
        }
        Ok(())
    }

    /// For records: the collection and (when the subject names one) the
    /// key the subject matches.
    pub fn record_subject(&self) -> Option<(&str, Option<&str>)> {
        self.subject.as_deref().map(|s| match s.split_once('/') {
            Some((c, k)) => (c, Some(k)),
            None => (s, None),
        })
    }

    /// For items: the item id the subject matches, if it is a number.
    pub fn item_subject(&self) -> Option<i64> {
        self.subject.as_deref().and_then(|s| s.parse().ok())
    }
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it; `None` for the clock (an expiry).
    pub actor: Option<String>,
    /// Which history it comes from.
    pub area: AuditArea,
    /// What it is about: the item id (decimal), the lock resource, or
    /// `collection/key`.
    pub subject: String,
    /// What happened: the item event (`claimed`, `completed`, …), the lock
    /// event (`granted`, `forced`, …) or the version kind (`create`,
    /// `merge`, …).
    pub action: String,
    /// Details. Items: `queue`, `token`, `detail` (the event's).
    /// Locks: `lock`, `holder`, `mode`, `token`, `detail`.
    /// Records: `version`, `base_version`, `merged_from`, `deleted`,
    /// `changes`.
    pub detail: serde_json::Value,
    /// Its place in the trail: `before` for the next page.
    pub cursor: AuditCursor,
}

/// Merges the pages each history gave (each newest first, each already
/// after the filter's cursor) into the trail's order and keeps the first
/// `limit`.
pub fn newest_first(pages: Vec<Vec<AuditEntry>>, limit: u32) -> Vec<AuditEntry> {
    let mut all: Vec<AuditEntry> = pages.into_iter().flatten().collect();
    all.sort_by(|a, b| b.cursor.cmp(&a.cursor));
    all.truncate(limit as usize);
    all
}

/// Items finished in a queue during one bucket of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThroughputBucket {
    /// Start of the bucket; it lasts until the next one starts.
    pub start: DateTime<Utc>,
    /// Items completed in it.
    pub completed: u64,
}

/// The starts of the buckets from the one holding `since` to the one
/// holding `now`, `bucket` long each. Buckets are aligned to multiples of
/// their length since the Unix epoch (5-minute buckets start at :00, :05,
/// …), so the last one is the current, partial one. Refuses a bucket
/// outside [`audit_limits::MIN_BUCKET_SECONDS`]..=[`audit_limits::MAX_BUCKET_SECONDS`]
/// whole seconds (field `bucket_seconds`), a `since` in the future, and
/// more than [`audit_limits::MAX_BUCKETS`] buckets.
pub fn throughput_buckets(
    since: Timestamp,
    now: Timestamp,
    bucket: std::time::Duration,
) -> Result<Vec<Timestamp>> {
    use audit_limits::*;
    let secs = bucket.as_secs();
    if bucket.subsec_nanos() != 0 || !(MIN_BUCKET_SECONDS..=MAX_BUCKET_SECONDS).contains(&secs) {
        return Err(Error::invalid(
            "bucket_seconds",
            format!("whole seconds, {MIN_BUCKET_SECONDS}..={MAX_BUCKET_SECONDS}"),
        ));
    }
    if since > now {
        return Err(Error::invalid("since", "must not be in the future"));
    }
    let ms = secs as i64 * 1000;
    let first = to_millis(since).div_euclid(ms) * ms;
    let n = (to_millis(now) - first) / ms + 1;
    if n > MAX_BUCKETS as i64 {
        return Err(Error::invalid(
            "bucket_seconds",
            format!("at most {MAX_BUCKETS} buckets: use longer buckets or a shorter range"),
        ));
    }
    Ok((0..n).map(|i| from_millis(first + i * ms)).collect())
}

/// Fills the buckets of [`throughput_buckets`] with counts per bucket
/// index (a count whose index is out of range is ignored); every bucket
/// is present, zeros included.
pub fn fill_buckets(starts: Vec<Timestamp>, counts: &[(i64, u64)]) -> Vec<ThroughputBucket> {
    let mut out: Vec<ThroughputBucket> = starts
        .into_iter()
        .map(|start| ThroughputBucket {
            start,
            completed: 0,
        })
        .collect();
    for &(i, n) in counts {
        if let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            b.completed += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    fn t(ms: i64) -> Timestamp {
        from_millis(1_700_000_000_000 + ms)
    }

    fn cursor(ms: i64, area: AuditArea, seq: i64, key: &str) -> AuditCursor {
        AuditCursor {
            at: t(ms),
            area,
            seq,
            key: key.into(),
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        for c in [
            cursor(5, AuditArea::Item, 7, ""),
            cursor(0, AuditArea::Lock, 1, ""),
            cursor(9, AuditArea::Record, 3, "clients/bob.smith@x:1"),
        ] {
            let s = c.to_string();
            assert_eq!(s.parse::<AuditCursor>().unwrap(), c, "{s}");
        }
        for bad in [
            "",
            "x.item.1",
            "1.thing.1",
            "1.item.x",
            "1.item.1.extra",
            "1.record.1",
            "1.record.1.nokey",
            "1.record.1.a b/c",
        ] {
            let e = bad.parse::<AuditCursor>().unwrap_err();
            assert!(
                matches!(e, Error::Invalid { ref field, .. } if field == "before"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_order_is_time_then_area_then_within_the_area() {
        let mut v = [
            cursor(1, AuditArea::Item, 9, ""),
            cursor(2, AuditArea::Item, 1, ""),
            cursor(2, AuditArea::Lock, 1, ""),
            cursor(2, AuditArea::Record, 1, "ab-c/x"),
            cursor(2, AuditArea::Record, 2, "ab/z"),
            cursor(2, AuditArea::Record, 1, "ab/z"),
            cursor(2, AuditArea::Item, 3, ""),
        ];
        v.sort();
        let order: Vec<String> = v.iter().map(|c| c.to_string()).collect();
        let base = 1_700_000_000_000i64;
        assert_eq!(
            order,
            vec![
                format!("{}.item.9", base + 1),
                format!("{}.item.1", base + 2),
                format!("{}.item.3", base + 2),
                format!("{}.lock.1", base + 2),
                // (collection, key) as a pair: "ab" before "ab-c", though
                // "ab/z" sorts after "ab-c/x" as one string.
                format!("{}.record.1.ab/z", base + 2),
                format!("{}.record.2.ab/z", base + 2),
                format!("{}.record.1.ab-c/x", base + 2),
            ]
        );
        let c = cursor(2, AuditArea::Lock, 1, "");
        assert_eq!(c.at_same_instant(AuditArea::Item), SameInstant::All);
        assert_eq!(c.at_same_instant(AuditArea::Lock), SameInstant::Below);
        assert_eq!(c.at_same_instant(AuditArea::Record), SameInstant::None);
    }

    #[test]
    fn filters_have_limits() {
        let ok = AuditFilter {
            limit: 500,
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let field = |f: AuditFilter| match f.validate() {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(AuditFilter {
                limit: 0,
                ..ok.clone()
            }),
            "limit"
        );
        assert_eq!(
            field(AuditFilter {
                limit: 501,
                ..ok.clone()
            }),
            "limit"
        );
        assert_eq!(
            field(AuditFilter {
                actor: Some(String::new()),
                ..ok.clone()
            }),
            "actor"
        );
        assert_eq!(
            field(AuditFilter {
                subject: Some("x".repeat(513)),
                ..ok.clone()
            }),
            "subject"
        );
        assert_eq!(
            field(AuditFilter {
                since: Some(t(5)),
                until: Some(t(5)),
                ..ok.clone()
            }),
            "until"
        );
        let f = AuditFilter {
            subject: Some("clients/bob".into()),
            ..ok.clone()
        };
        assert_eq!(f.record_subject(), Some(("clients", Some("bob"))));
        assert_eq!(f.item_subject(), None);
        let f = AuditFilter {
            subject: Some("42".into()),
            ..ok
        };
        assert_eq!(f.record_subject(), Some(("42", None)));
        assert_eq!(f.item_subject(), Some(42));
    }

    #[test]
    fn buckets_are_aligned_and_cover_the_range_with_zeros() {
        // A multiple of 5 minutes since the epoch.
        let m = |s: i64| from_millis(1_700_000_100_000 + s * 1000);
        let five = Std::from_secs(300);
        let starts = throughput_buckets(m(0), m(600), five).unwrap();
        assert_eq!(starts, vec![m(0), m(300), m(600)]);
        assert_eq!(throughput_buckets(m(0), m(599), five).unwrap().len(), 2);
        // Not aligned: from the bucket holding `since` to the one holding
        // `now`.
        let starts = throughput_buckets(m(299), m(301), five).unwrap();
        assert_eq!(starts, vec![m(0), m(300)]);
        let filled = fill_buckets(
            throughput_buckets(m(0), m(600), five).unwrap(),
            &[(0, 2), (2, 5), (7, 1), (-1, 1)],
        );
        let counts: Vec<u64> = filled.iter().map(|b| b.completed).collect();
        assert_eq!(counts, vec![2, 0, 5]);
        assert_eq!(
            throughput_buckets(m(0), m(0), Std::from_secs(60)).unwrap(),
            vec![m(0)]
        );
        // The most buckets, and one more.
        assert_eq!(
            throughput_buckets(m(0), m(1439), Std::from_secs(1))
                .unwrap()
                .len(),
            1440
        );
        for (since, bucket) in [
            (m(1), Std::from_secs(60)),
            (m(0), Std::from_secs(0)),
            (m(0), Std::from_millis(1500)),
            (m(0), Std::from_secs(86_401)),
            (m(-1440), Std::from_secs(1)),
        ] {
            assert!(
                throughput_buckets(since, m(0), bucket).is_err(),
                "{since} {bucket:?}"
            );
        }
    }

    #[test]
    fn pages_merge_newest_first() {
        let e = |ms, area, seq| AuditEntry {
            at: t(ms),
            actor: None,
            area,
            subject: String::new(),
            action: String::new(),
            detail: serde_json::Value::Null,
            cursor: cursor(
                ms,
                area,
                seq,
                if area == AuditArea::Record { "c/k" } else { "" },
            ),
        };
        let merged = newest_first(
            vec![
                vec![e(5, AuditArea::Item, 2), e(1, AuditArea::Item, 1)],
                vec![e(5, AuditArea::Lock, 1), e(3, AuditArea::Lock, 0)],
                vec![e(4, AuditArea::Record, 1)],
            ],
            4,
        );
        let got: Vec<(i64, AuditArea)> = merged
            .iter()
            .map(|x| (to_millis(x.at) - 1_700_000_000_000, x.area))
            .collect();
        assert_eq!(
            got,
            vec![
                (5, AuditArea::Lock),
                (5, AuditArea::Item),
                (4, AuditArea::Record),
                (3, AuditArea::Lock)
            ]
        );
    }
}
