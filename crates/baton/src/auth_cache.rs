//! Recently authenticated tokens, so that a busy client's every request
//! does not cost a database read (and, on SQLite, a hop to a reader
//! thread).
//!
//! Only successful lookups are kept, for [`TTL`]: principals and tokens
//! cannot be deleted or changed today, so a cached answer is the answer
//! the database would give. Whatever adds revocation or role changes must
//! call [`AuthCache::clear`] (and, with several servers, accept that the
//! others see the change within [`TTL`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use baton_core::Principal;

/// How long a successful authentication is remembered.
pub const TTL: Duration = Duration::from_secs(10);

/// Most tokens remembered; the cache starts over when full.
const CAPACITY: usize = 10_000;

/// Token hash → principal, with the time it was looked up.
#[derive(Default)]
pub(crate) struct AuthCache {
    map: Mutex<HashMap<Vec<u8>, (Principal, Instant)>>,
}

impl AuthCache {
    /// The principal of a token hash looked up less than [`TTL`] ago.
    pub(crate) fn get(&self, hash: &[u8]) -> Option<Principal> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(p, _)| p.clone())
    }

    /// Remembers a successful lookup.
    pub(crate) fn put(&self, hash: Vec<u8>, principal: Principal) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(hash, (principal, Instant::now()));
    }

    /// Forgets everything (for revocation, when it exists).
    #[allow(dead_code)]
    pub(crate) fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::Role;

    #[test]
    fn remembers_hits_and_starts_over_when_full() {
        let c = AuthCache::default();
        let p = Principal {
            id: 1,
            name: "alice".into(),
            role: Role::Operator,
        };
        assert_eq!(c.get(b"h"), None);
        c.put(b"h".to_vec(), p.clone());
        assert_eq!(c.get(b"h"), Some(p.clone()));
        for i in 0..CAPACITY {
            c.put(i.to_le_bytes().to_vec(), p.clone());
        }
        assert_eq!(c.get(b"h"), None, "cleared when it filled up");
        c.clear();
        assert_eq!(c.get(&0usize.to_le_bytes()), None);
    }
}
