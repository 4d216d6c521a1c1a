//! Topics of live events: what a subscriber to `GET /v1/events` (or
//! `Engine::subscribe`) asks to hear about. Parsed and validated here,
//! in one place, so every bad topic string meets the same 422.
//!
//! | topic | events |
//! |---|---|
//! | `queues` | every item event of every queue |
//! | `queue:NAME` | item events of one queue |
//! | `item:ID` | events of one item (including its lease's) |
//! | `collection:NAME` | `record.changed` of one collection |
//! | `record:COLLECTION/KEY` | `record.changed` of one record |
//! | `locks` | every lock event |
//! | `lock:RESOURCE` | lock events touching one resource |

use std::fmt;
use std::str::FromStr;

use crate::{CollectionName, Error, ItemId, QueueName, RecordKey, ResourceName, Result};

/// Most topics one subscription may name.
pub const MAX_TOPICS: usize = 32;

/// One topic of the live event stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// `queues`: every item event.
    Queues,
    /// `queue:NAME`: item events of one queue.
    Queue(QueueName),
    /// `item:ID`: events of one item.
    Item(ItemId),
    /// `collection:NAME`: record changes of one collection.
    Collection(CollectionName),
    /// `record:COLLECTION/KEY`: changes of one record.
    Record(CollectionName, RecordKey),
    /// `locks`: every lock event.
    Locks,
    /// `lock:RESOURCE`: lock events touching one resource.
    Lock(ResourceName),
}

impl Topic {
    /// Parses one topic string (see the module documentation); an
    /// [`Error::Invalid`] of the field `topics` names what is wrong.
    pub fn parse(s: &str) -> Result<Topic> {
        let bad = |why: String| Error::invalid("topics", format!("{s:?}: {why}"));
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let name_err = |e: Error| match e {
            Error::Invalid { reason, .. } => bad(reason),
            other => other,
        };
        match (kind, arg) {
            ("queues", None) => Ok(Topic::Queues),
            ("locks", None) => Ok(Topic::Locks),
            ("queue", Some(q)) => QueueName::new(q).map(Topic::Queue).map_err(name_err),
            ("item", Some(id)) => match id.parse::<ItemId>() {
                Ok(n) if n > 0 && !id.starts_with('+') => Ok(Topic::Item(n)),
                _ => Err(bad("an item id is a positive integer".into())),
            },
            ("collection", Some(c)) => CollectionName::new(c)
                .map(Topic::Collection)
                .map_err(name_err),
            ("record", Some(r)) => {
                let (c, k) = r
                    .split_once('/')
                    .ok_or_else(|| bad("expected record:COLLECTION/KEY".into()))?;
                Ok(Topic::Record(
                    CollectionName::new(c).map_err(name_err)?,
                    RecordKey::new(k).map_err(name_err)?,
                ))
            }
            ("lock", Some(r)) => ResourceName::new(r).map(Topic::Lock).map_err(name_err),
            ("queues" | "locks", Some(_)) => Err(bad(format!("{kind} takes no argument"))),
            ("queue" | "item" | "collection" | "record" | "lock", None) => {
                Err(bad(format!("expected {kind}:...")))
            }
            _ => Err(bad(
                "unknown topic; one of queues, queue:NAME, item:ID, collection:NAME, \
                 record:COLLECTION/KEY, locks, lock:RESOURCE"
                    .into(),
            )),
        }
    }

    /// Parses a comma-separated list of 1 to [`MAX_TOPICS`] topics
    /// (duplicates are dropped; the order is kept). A lock resource whose
    /// name contains a comma cannot be named in such a list: subscribe to
    /// `locks` for it.
    pub fn parse_list(s: &str) -> Result<Vec<Topic>> {
        let mut topics: Vec<Topic> = Vec::new();
        for part in s.split(',') {
            if part.is_empty() {
                return Err(Error::invalid(
                    "topics",
                    "a comma-separated list of topics without empty entries, e.g. queue:refunds,record:clients/42",
                ));
            }
            let t = Topic::parse(part)?;
            if !topics.contains(&t) {
                topics.push(t);
            }
        }
        Self::check_count(topics.len())?;
        Ok(topics)
    }

    /// Checks that a subscription names 1 to [`MAX_TOPICS`] topics.
    pub fn check_count(n: usize) -> Result<()> {
        if (1..=MAX_TOPICS).contains(&n) {
            Ok(())
        } else {
            Err(Error::invalid(
                "topics",
                format!("name 1 to {MAX_TOPICS} topics, got {n}"),
            ))
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Queues => f.write_str("queues"),
            Topic::Queue(q) => write!(f, "queue:{q}"),
            Topic::Item(id) => write!(f, "item:{id}"),
            Topic::Collection(c) => write!(f, "collection:{c}"),
            Topic::Record(c, k) => write!(f, "record:{c}/{k}"),
            Topic::Locks => f.write_str("locks"),
            Topic::Lock(r) => write!(f, "lock:{r}"),
        }
    }
}

impl FromStr for Topic {
    type Err = Error;
    fn from_str(s: &str) -> Result<Topic> {
        Topic::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "queues",
            "locks",
            "queue:refunds",
            "item:42",
            "collection:clients",
            "record:clients/bob@example.com",
            "record:clients/order:1042",
            "lock:customer/42",
            "lock:invoice 7",
        ] {
            let t = Topic::parse(s).unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert_eq!(
            Topic::parse("record:clients/42").unwrap(),
            Topic::Record(
                CollectionName::new("clients").unwrap(),
                RecordKey::new("42").unwrap()
            )
        );
    }

    #[test]
    fn refuses_bad_topics_naming_the_field() {
        for s in [
            "",
            "queue",
            "queue:",
            "queue:a b",
            "queues:x",
            "item:0",
            "item:-3",
            "item:+3",
            "item:x",
            "record:clients",
            "record:clients/a/b",
            "lock: padded",
            "weather",
        ] {
            match Topic::parse(s) {
                Err(Error::Invalid { field, reason }) => {
                    assert_eq!(field, "topics");
                    assert!(reason.contains(&format!("{s:?}")), "{reason}");
                }
                other => panic!("{s:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn lists() {
        let l = Topic::parse_list("queue:a,item:1,queue:a,locks").unwrap();
        assert_eq!(l.len(), 3);
        assert!(Topic::parse_list("").is_err());
        assert!(Topic::parse_list("queue:a,,locks").is_err());
        let many: Vec<String> = (1..=MAX_TOPICS).map(|i| format!("item:{i}")).collect();
        assert_eq!(
            Topic::parse_list(&many.join(",")).unwrap().len(),
            MAX_TOPICS
        );
        let too_many: Vec<String> = (1..=MAX_TOPICS + 1).map(|i| format!("item:{i}")).collect();
        assert!(matches!(
            Topic::parse_list(&too_many.join(",")),
            Err(Error::Invalid { field, .. }) if field == "topics"
        ));
    }
}
