//! Recently authenticated tokens and web sessions, so that a busy
//! client's every request does not cost a database read (and, on SQLite,
//! a hop to a reader thread).
//!
//! Only successful lookups are kept, for [`TTL`]. Whatever changes what a
//! lookup would answer on this server removes the entry at once: token
//! revocation removes the token's hash, logout the session's. Principals
//! cannot be deleted or have their role changed today. With several
//! servers, the others see a revocation or a logout within [`TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use baton_core::Principal;

/// How long a successful lookup is remembered.
pub const TTL: Duration = Duration::from_secs(10);

/// Most entries remembered; the cache starts over when full.
const CAPACITY: usize = 10_000;

/// Secret hash → what it authenticates, with the time it was looked up.
pub(crate) struct AuthCache<V = Principal> {
    map: Mutex<HashMap<Vec<u8>, (V, Instant)>>,
}

impl<V> Default for AuthCache<V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> AuthCache<V> {
    /// The value of a hash looked up less than [`TTL`] ago.
    pub(crate) fn get(&self, hash: &[u8]) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(v, _)| v.clone())
    }

    /// Remembers a successful lookup.
    pub(crate) fn put(&self, hash: Vec<u8>, value: V) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(hash, (value, Instant::now()));
    }

    /// Forgets one hash (a revoked token, a closed session).
    pub(crate) fn remove(&self, hash: &[u8]) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    /// Forgets everything.
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
    fn remembers_hits_forgets_on_request_and_starts_over_when_full() {
        let c: AuthCache = AuthCache::default();
        let p = Principal {
            id: 1,
            name: "alice".into(),
            role: Role::Operator,
        };
        assert_eq!(c.get(b"h"), None);
        c.put(b"h".to_vec(), p.clone());
        c.put(b"g".to_vec(), p.clone());
        assert_eq!(c.get(b"h"), Some(p.clone()));
        c.remove(b"h");
        assert_eq!(c.get(b"h"), None, "removed");
        assert_eq!(c.get(b"g"), Some(p.clone()), "others stay");
        for i in 0..CAPACITY {
            c.put(i.to_le_bytes().to_vec(), p.clone());
        }
        assert_eq!(c.get(b"g"), None, "cleared when it filled up");
        c.clear();
        assert_eq!(c.get(&0usize.to_le_bytes()), None);
    }
}
