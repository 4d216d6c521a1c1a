//! Validated names ("parse, don't validate"): a [`QueueName`] or [`Kind`]
//! that exists is known to be well formed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Error, Result};

/// Checks a name: 1 to `max` ASCII letters, digits, `.`, `_`, `-` and the
/// characters of `extra`, starting with a letter or digit. Never a space,
/// so that every database compares names byte for byte.
fn check_name(field: &str, s: &str, max: usize, extra: &[char]) -> Result<()> {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(&c));
    if first_ok && rest_ok && s.len() <= max {
        Ok(())
    } else {
        let extra: String = extra.iter().map(|c| format!(", '{c}'")).collect();
        Err(Error::invalid(
            field,
            format!(
                "{s:?} is not a valid name: 1 to {max} characters, letters, digits, '.', '_', '-'{extra}, starting with a letter or digit"
            ),
        ))
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        name_type!($(#[$doc])* $name, $field, $max, []);
    };
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal, [$($extra:literal),*]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted name, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Parses and validates a name.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                check_name($field, &s, $max, &[$($extra),*])?;
                Ok(Self(s))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The name of a work queue, for example `refunds`.
    QueueName, "queue", 128
);
name_type!(
    /// The kind of an item, for example `refund`; claimers may filter on it.
    Kind, "kind", 64
);
name_type!(
    /// The name of a collection of versioned records, for example
    /// `clients`.
    CollectionName, "collection", 64
);
name_type!(
    /// The key of a record within its collection, for example `bob`,
    /// `42` or `bob@example.com`. Letters, digits, `.`, `_`, `-`, `:`, `@`,
    /// so that `{collection}/{key}` is a lock resource name and a path
    /// segment as it is.
    RecordKey, "key", 128, [':', '@']
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(QueueName::new("refunds").is_ok());
        assert!(QueueName::new("eu-west.refunds_2").is_ok());
        assert!(QueueName::new("").is_err());
        assert!(QueueName::new("-x").is_err());
        assert!(QueueName::new("a/b").is_err());
        assert!(QueueName::new("a b").is_err());
        assert!(QueueName::new("x".repeat(128)).is_ok());
        assert!(QueueName::new("x".repeat(129)).is_err());
        assert!(Kind::new("x".repeat(65)).is_err());
        assert!(RecordKey::new("bob@example.com").is_ok());
        assert!(RecordKey::new("order:1042").is_ok());
        assert!(RecordKey::new("a/b").is_err());
        assert!(RecordKey::new("bob ").is_err());
        assert!(QueueName::new("a:b").is_err());
        assert!(CollectionName::new("x".repeat(65)).is_err());
        let e = QueueName::new("a/b").unwrap_err();
        assert!(matches!(e, Error::Invalid { ref field, .. } if field == "queue"));
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<Kind>("\"refund\"").is_ok());
        assert!(serde_json::from_str::<Kind>("\"re fund\"").is_err());
    }
}
