//! Time, from one place.
//!
//! The engine reads the time once per operation from a [`Clock`] and passes
//! it down to the rules and the store as an explicit `now`; nothing else in
//! Baton calls `Utc::now()`. Tests use [`ManualClock`] to move time by hand.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// A point in time, UTC, millisecond precision when stored.
pub type Timestamp = DateTime<Utc>;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        truncate_millis(Utc::now())
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    // A std Mutex: nothing awaits while holding it.
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(truncate_millis(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = truncate_millis(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops sub-millisecond precision, so that a time survives a round trip
/// through any store unchanged.
pub fn truncate_millis(t: Timestamp) -> Timestamp {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Milliseconds since the Unix epoch, as stores keep time.
pub fn to_millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch.
pub fn from_millis(ms: i64) -> Timestamp {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Times as JSON, the way chrono writes a `DateTime<Utc>` (RFC 3339:
/// `2026-11-25T02:58:30.731Z`, the fraction in 0, 3, 6 or 9 digits as
/// needed), written straight into the output instead of through
/// `core::fmt`: every item in an answer carries several times, and
/// chrono's formatting was about a fifth of the CPU the server spent on a
/// claim + complete. Years outside 0..=9999 and leap seconds go through
/// chrono itself.
pub mod rfc3339 {
    use chrono::{Datelike, Timelike};
    use serde::{Serialize, Serializer};

    use super::Timestamp;

    /// The longest text the fast path writes.
    const MAX: usize = "2026-11-25T02:58:30.123456789Z".len();

    fn two(buf: &mut [u8], at: usize, v: u32) {
        buf[at] = b'0' + (v / 10) as u8;
        buf[at + 1] = b'0' + (v % 10) as u8;
    }

    /// Writes `t` into `buf`; `None` when only chrono knows how.
    fn format(t: &Timestamp, buf: &mut [u8; MAX]) -> Option<usize> {
        let year = t.year();
        let nano = t.nanosecond();
        if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
            return None;
        }
        let year = year as u32;
        two(buf, 0, year / 100);
        two(buf, 2, year % 100);
        buf[4] = b'-';
        two(buf, 5, t.month());
        buf[7] = b'-';
        two(buf, 8, t.day());
        buf[10] = b'T';
        two(buf, 11, t.hour());
        buf[13] = b':';
        two(buf, 14, t.minute());
        buf[16] = b':';
        two(buf, 17, t.second());
        let mut n = 19;
        let (frac, digits) = if nano == 0 {
            (0, 0)
        } else if nano.is_multiple_of(1_000_000) {
            (nano / 1_000_000, 3)
        } else if nano.is_multiple_of(1_000) {
            (nano / 1_000, 6)
        } else {
            (nano, 9)
        };
        if digits > 0 {
            buf[n] = b'.';
            let mut f = frac;
            for i in (0..digits).rev() {
                buf[n + 1 + i] = b'0' + (f % 10) as u8;
                f /= 10;
            }
            n += 1 + digits;
        }
        buf[n] = b'Z';
        Some(n + 1)
    }

    /// Serializes `t` as chrono would (`#[serde(serialize_with)]`).
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; MAX];
        match format(t, &mut buf) {
            // Only ASCII digits and punctuation were written.
            Some(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or_default()),
            None => t.serialize(s),
        }
    }

    /// [`serialize`] for an optional time (`null` when absent).
    pub fn option<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// A time that serializes through [`serialize`], for `json!` values.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Rfc3339(pub Timestamp);

    impl Serialize for Rfc3339 {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, s)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use chrono::{DateTime, TimeZone, Utc};
        use proptest::prelude::*;

        fn ours(t: &Timestamp) -> String {
            serde_json::to_string(&Rfc3339(*t)).unwrap()
        }

        #[test]
        fn writes_what_chrono_writes() {
            let base = Utc.with_ymd_and_hms(2026, 11, 25, 2, 58, 30).unwrap();
            for nanos in [
                0,
                1,
                1_000,
                731_000_000,
                731_589_000,
                731_589_123,
                999_999_999,
            ] {
                let t = base + chrono::Duration::nanoseconds(nanos);
                assert_eq!(ours(&t), serde_json::to_string(&t).unwrap());
            }
            for t in [
                DateTime::<Utc>::MIN_UTC,
                DateTime::<Utc>::MAX_UTC,
                DateTime::UNIX_EPOCH,
                Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
                Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            ] {
                assert_eq!(ours(&t), serde_json::to_string(&t).unwrap());
            }
            // A leap second (nanosecond >= 1e9) goes through chrono.
            let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .unwrap()
                .and_utc();
            assert_eq!(ours(&leap), serde_json::to_string(&leap).unwrap());
            assert_eq!(
                serde_json::to_string(&serde_json::json!({"t": Option::<Rfc3339>::None})).unwrap(),
                r#"{"t":null}"#
            );
        }

        proptest! {
            #[test]
            fn any_time_is_written_as_chrono_writes_it(
                secs in -80_000_000_000i64..300_000_000_000,
                nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000),
                                     (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000],
            ) {
                let t = DateTime::from_timestamp(secs, nanos).unwrap();
                prop_assert_eq!(ours(&t), serde_json::to_string(&t).unwrap());
            }
        }
    }
}
