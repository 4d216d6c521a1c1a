//! The lock manager explored exhaustively: from an empty table, every
//! sequence of operations up to [`DEPTH`] long over two resources, two
//! holders and a supervisor (acquire any subset in any mode, failing fast
//! or queueing; retry and withdraw queued requests; heartbeat, release,
//! upgrade, downgrade and force every lock; log a session out; let time
//! pass; sweep), with states already seen pruned. After every step the
//! invariants are checked, and every acquire is compared with a naive
//! reference: "granted iff, on each resource, every live lock and every
//! live request queued ahead is compatible". Random walks of 60 steps
//! reach further.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration};

use super::*;
use crate::{EndCause, LockEventKind, LockRequest};

/// Steps per explored sequence.
const DEPTH: usize = 4;
/// Idle TTL of every lock, and the step of time.
const TTL: u32 = 10;
const STEP: i64 = 6;
/// How long queued requests wait.
const WAIT: i64 = 15;

fn t0() -> Timestamp {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn r(name: &str) -> ResourceName {
    ResourceName::new(name).unwrap()
}

const HOLDERS: [&str; 2] = ["alice", "bob"];
const SETS: [&[&str]; 3] = [&["a"], &["b"], &["a", "b"]];

#[derive(Debug, Clone)]
enum Act {
    Acquire {
        who: &'static str,
        set: usize,
        mode: LockMode,
        queue: bool,
    },
    Retry(TicketId),
    Withdraw(TicketId),
    Heartbeat(LockId),
    Release(LockId),
    Upgrade(LockId),
    Downgrade(LockId),
    Force(LockId),
    Logout(&'static str),
    Advance,
    Sweep,
}

#[derive(Debug, Clone)]
struct World {
    table: LockTable,
    now: Timestamp,
    /// The request behind each ticket handed out.
    pending: BTreeMap<TicketId, LockRequest>,
}

impl World {
    fn acts(&self) -> Vec<Act> {
        let mut acts = Vec::new();
        for who in HOLDERS {
            for set in 0..SETS.len() {
                for mode in LockMode::ALL {
                    for queue in [false, true] {
                        acts.push(Act::Acquire {
                            who,
                            set,
                            mode,
                            queue,
                        });
                    }
                }
            }
        }
        for t in self.pending.keys() {
            acts.push(Act::Retry(*t));
            acts.push(Act::Withdraw(*t));
        }
        for id in self.table.locks.keys() {
            acts.extend([
                Act::Heartbeat(*id),
                Act::Release(*id),
                Act::Upgrade(*id),
                Act::Downgrade(*id),
                Act::Force(*id),
            ]);
        }
        acts.extend([Act::Logout("alice"), Act::Advance, Act::Sweep]);
        acts
    }

    /// What identifies a state for pruning: the table without its
    /// history, with times relative to now.
    fn key(&self) -> String {
        let rel = |t: Timestamp| (t - self.now).num_seconds();
        let locks: Vec<_> = self
            .table
            .locks
            .values()
            .map(|l| {
                (
                    l.id,
                    l.token.0,
                    &l.holder,
                    l.mode,
                    &l.resources,
                    rel(l.expires_at),
                    l.ended.as_ref().map(|e| e.cause),
                )
            })
            .collect();
        let tickets: Vec<_> = self
            .table
            .tickets
            .iter()
            .map(|(id, t)| (id, &t.holder, t.mode, &t.resources, rel(t.expires_at)))
            .collect();
        format!(
            "{locks:?}|{tickets:?}|{:?}|{:?}",
            self.table.tokens,
            self.pending.keys().collect::<Vec<_>>()
        )
    }
}

fn request(who: &str, set: usize, mode: LockMode) -> LockRequest {
    LockRequest::new(
        SETS[set].iter().map(|n| r(n)).collect(),
        mode,
        who.into(),
        Some("tab".into()),
        TTL,
        None,
        None,
    )
    .unwrap()
}

/// The reference: may `req` (holding `own` ticket, if live) be granted?
fn naive_grantable(w: &World, req: &LockRequest, own: Option<TicketId>) -> bool {
    let own = own.filter(|t| w.table.tickets.get(t).is_some_and(|t| t.expires_at > w.now));
    req.resources.iter().all(|res| {
        let locks_ok = w
            .table
            .locks
            .values()
            .filter(|l| l.is_live(w.now) && l.resources.contains(res))
            .all(|l| l.mode == LockMode::Shared && req.mode == LockMode::Shared);
        let queue_ok = w
            .table
            .tickets
            .iter()
            .filter(|(id, t)| {
                own.is_none_or(|o| **id < o) && t.expires_at > w.now && t.resources.contains(res)
            })
            .all(|(_, t)| t.mode == LockMode::Shared && req.mode == LockMode::Shared);
        locks_ok && queue_ok
    })
}

fn max_token(t: &LockTable) -> i64 {
    t.tokens.values().map(|t| t.0).max().unwrap_or(0)
}

/// Applies `act`, checking what the step itself must satisfy.
fn step(w: &World, act: &Act) -> World {
    let mut next = w.clone();
    let now = w.now;
    let table = &mut next.table;
    let ctx = || format!("{act:?} on {w:#?}");
    let unchanged_unless_ok = |ok: bool, before: &LockTable, after: &LockTable| {
        if !ok {
            assert_eq!(before, after, "a refusal changed something: {}", ctx());
        }
    };
    match act {
        Act::Acquire {
            who,
            set,
            mode,
            queue,
        } => {
            let req = request(who, *set, *mode);
            let expect = naive_grantable(w, &req, None);
            let wait = queue.then(|| Duration::seconds(WAIT));
            let a = table
                .acquire(&req, Queueing { ticket: None, wait }, now)
                .unwrap();
            check_acquisition(w, &next_view(table), &req, &a, expect, None, &ctx);
            if let Acquisition::Blocked {
                ticket: Some(t), ..
            } = a
            {
                next.pending.insert(t, req);
            }
        }
        Act::Retry(t) => {
            let req = w.pending[t].clone();
            let expect = naive_grantable(w, &req, Some(*t));
            let a = table
                .acquire(
                    &req,
                    Queueing {
                        ticket: Some(*t),
                        wait: Some(Duration::seconds(WAIT)),
                    },
                    now,
                )
                .unwrap();
            check_acquisition(w, &next_view(table), &req, &a, expect, Some(*t), &ctx);
            match a {
                Acquisition::Granted { .. } => {
                    next.pending.remove(t);
                }
                Acquisition::Blocked { ticket, .. } => {
                    if ticket != Some(*t) {
                        next.pending.remove(t);
                        if let Some(new) = ticket {
                            next.pending.insert(new, req);
                        }
                    }
                }
            }
        }
        Act::Withdraw(t) => {
            let had = table.tickets.contains_key(t);
            assert_eq!(table.withdraw(*t).is_some(), had);
            next.pending.remove(t);
        }
        Act::Heartbeat(id) | Act::Release(id) | Act::Upgrade(id) | Act::Downgrade(id) => {
            let before = w.table.locks[id].clone();
            let settled = lock_rules::settle(before.clone(), now);
            let holder = before.holder.clone();
            // The holder acts; a stranger is refused first.
            let stranger = if holder == "alice" { "bob" } else { "alice" };
            let refused = match act {
                Act::Heartbeat(_) => table.heartbeat(*id, stranger, TTL, now),
                Act::Release(_) => table.release(*id, stranger, now),
                Act::Upgrade(_) => table.upgrade(*id, stranger, now),
                _ => table.downgrade(*id, stranger, now),
            };
            assert!(refused.is_err(), "{}", ctx());
            assert_eq!(table, &w.table, "{}", ctx());
            let result = match act {
                Act::Heartbeat(_) => table.heartbeat(*id, &holder, TTL, now),
                Act::Release(_) => table.release(*id, &holder, now),
                Act::Upgrade(_) => table.upgrade(*id, &holder, now),
                _ => table.downgrade(*id, &holder, now),
            };
            if let Some(end) = &settled.ended {
                // An ended lock says how it ended, and nothing changes.
                match &result {
                    Err(Error::LockEnded { end: e, .. }) => assert_eq!(**e, *end, "{}", ctx()),
                    other => panic!("expected LockEnded, got {other:?}: {}", ctx()),
                }
            }
            if let (Act::Upgrade(_), Ok(lock)) = (act, &result)
                && before.mode == LockMode::Shared
            {
                assert!(lock.token.0 > max_token(&w.table), "{}", ctx());
                // It was the only live holder of each of its resources.
                for res in &lock.resources {
                    assert!(
                        w.table
                            .locks
                            .values()
                            .filter(|l| l.id != *id && l.is_live(now))
                            .all(|l| !l.resources.contains(res)),
                        "{}",
                        ctx()
                    );
                }
            }
            if let (Act::Upgrade(_), Err(e)) = (act, &result) {
                assert!(
                    matches!(e, Error::Locked { .. } | Error::LockEnded { .. }),
                    "{e:?}: {}",
                    ctx()
                );
            }
            unchanged_unless_ok(result.is_ok(), &w.table, table);
        }
        Act::Force(id) => {
            let settled = lock_rules::settle(w.table.locks[id].clone(), now);
            let result = table.force(*id, "sup", "on vacation", now);
            match (&settled.ended, &result) {
                (Some(_), Err(Error::LockEnded { .. })) => {}
                (None, Ok(lock)) => {
                    assert_eq!(lock.ended.as_ref().map(|e| e.cause), Some(EndCause::Forced));
                    for res in &lock.resources {
                        assert!(table.tokens[res] > lock.token, "{}", ctx());
                        assert!(table.tokens[res] > w.table.tokens[res], "{}", ctx());
                    }
                }
                other => panic!("{other:?}: {}", ctx()),
            }
            unchanged_unless_ok(result.is_ok(), &w.table, table);
        }
        Act::Logout(who) => {
            let released = table.release_session(who, "tab", now);
            for l in &released {
                assert_eq!(l.holder, *who);
                assert!(w.table.locks[&l.id].is_live(now));
            }
            let live_left = table
                .locks
                .values()
                .filter(|l| l.holder == *who && l.is_live(now))
                .count();
            assert_eq!(live_left, 0, "{}", ctx());
        }
        Act::Advance => next.now = now + Duration::seconds(STEP),
        Act::Sweep => {
            let report = table.sweep(now, Duration::days(7), Duration::days(1));
            for l in &report.expired {
                assert_eq!(l.ended.as_ref().unwrap().cause, EndCause::Expired);
            }
            // Sweeping changes nothing anyone can observe through reads.
            for id in w.table.locks.keys() {
                assert_eq!(w.table.lock(*id, now).ok(), table.lock(*id, now).ok());
            }
            let again = table
                .clone()
                .sweep(now, Duration::days(7), Duration::days(1));
            assert_eq!(again, LockSweepReport::default(), "idempotent");
        }
    }
    // Tickets whose wait ran out are gone from the pending list once the
    // table dropped them.
    let tickets: Vec<TicketId> = next.table.tickets.keys().copied().collect();
    next.pending
        .retain(|t, _| tickets.contains(t) || w.table.tickets.contains_key(t));
    next.pending
        .retain(|t, _| next.table.tickets.contains_key(t));
    check_state(&next);
    next
}

/// A read-only view of the table after a step (for comparing).
fn next_view(t: &LockTable) -> LockTable {
    t.clone()
}

fn check_acquisition(
    before: &World,
    after: &LockTable,
    req: &LockRequest,
    a: &Acquisition,
    expect: bool,
    own: Option<TicketId>,
    ctx: &dyn Fn() -> String,
) {
    match a {
        Acquisition::Granted { lock, created } => {
            assert!(expect, "granted against the reference: {}", ctx());
            assert!(created);
            assert!(lock.token.0 > max_token(&before.table), "{}", ctx());
            for res in &req.resources {
                assert_eq!(after.tokens[res], lock.token);
            }
            assert!(own.is_none_or(|t| !after.tickets.contains_key(&t)));
        }
        Acquisition::Blocked {
            conflicts, ticket, ..
        } => {
            assert!(!expect, "blocked against the reference: {}", ctx());
            assert!(!conflicts.is_empty());
            // A blocked attempt changes at most the queue.
            let mut b = before.table.clone();
            let mut c = after.clone();
            b.tickets.clear();
            c.tickets.clear();
            c.last_ticket = b.last_ticket;
            assert_eq!(b, c, "{}", ctx());
            if let Some(t) = ticket {
                assert!(after.tickets.contains_key(t));
            }
            // The earliest live request is blocked by locks only: it is
            // never kept waiting by the queue.
            let earliest = before
                .table
                .tickets
                .iter()
                .filter(|(_, t)| t.expires_at > before.now)
                .map(|(id, _)| *id)
                .min();
            if own.is_some() && own == earliest {
                assert!(conflicts.iter().all(|c| !c.waiting), "{}", ctx());
            }
        }
    }
}

/// Invariants of every reachable state.
fn check_state(w: &World) {
    let now = w.now;
    for res in [r("a"), r("b")] {
        let live: Vec<&Lock> = w
            .table
            .locks
            .values()
            .filter(|l| l.is_live(now) && l.resources.contains(&res))
            .collect();
        let exclusive = live
            .iter()
            .filter(|l| l.mode == LockMode::Exclusive)
            .count();
        assert!(
            exclusive == 0 || live.len() == 1,
            "mutual exclusion broken on {res}: {live:#?}"
        );
        for l in &live {
            assert!(
                w.table.tokens[&res] >= l.token,
                "{res}: token behind a holder"
            );
        }
        // The status agrees with the locks.
        let status = &w.table.status(std::slice::from_ref(&res), now)[0];
        assert_eq!(status.holders.len(), live.len());
        assert_eq!(status.locked, !live.is_empty());
        // Grants and upgrades of a resource carry strictly increasing tokens.
        let tokens: Vec<i64> = w
            .table
            .history
            .iter()
            .filter(|e| {
                e.resource == res
                    && matches!(e.kind, LockEventKind::Granted | LockEventKind::Upgraded)
            })
            .map(|e| e.token.0)
            .collect();
        assert!(tokens.windows(2).all(|p| p[0] < p[1]), "{res}: {tokens:?}");
    }
}

#[test]
fn every_short_operation_sequence_keeps_the_invariants() {
    let start = World {
        table: LockTable::new(),
        now: t0(),
        pending: BTreeMap::new(),
    };
    let mut seen: HashSet<String> = HashSet::new();
    seen.insert(start.key());
    let mut frontier = vec![start];
    let mut explored = 0usize;
    for _ in 0..DEPTH {
        let mut next = Vec::new();
        for w in &frontier {
            for act in w.acts() {
                let n = step(w, &act);
                explored += 1;
                if seen.insert(n.key()) {
                    next.push(n);
                }
            }
        }
        frontier = next;
    }
    // Not a speed assertion: a guard that the exploration is not vacuous.
    assert!(seen.len() > 10_000, "only {} states", seen.len());
    eprintln!("explored {explored} steps, {} distinct states", seen.len());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Beyond the exhaustive depth: long random walks through the same
    /// operations, with the same checks after every step.
    #[test]
    fn long_random_operation_sequences_keep_the_invariants(
        choices in proptest::collection::vec(proptest::prelude::any::<u32>(), 60)
    ) {
        let mut w = World {
            table: LockTable::new(),
            now: t0(),
            pending: BTreeMap::new(),
        };
        for c in choices {
            let acts = w.acts();
            let act = &acts[c as usize % acts.len()];
            w = step(&w, act);
        }
    }
}

/// The starvation scenario spelled out: a waiting exclusive request is
/// not overtaken by a stream of shared ones, and gets the resource once
/// the shared holders are gone.
#[test]
fn a_waiting_exclusive_request_is_not_starved_by_shared_ones() {
    let mut t = LockTable::new();
    let now = t0();
    let shared = |who: &str| request(who, 0, LockMode::Shared);
    let wait = Queueing {
        ticket: None,
        wait: Some(Duration::seconds(30)),
    };
    let Acquisition::Granted { lock: first, .. } = t.acquire(&shared("alice"), wait, now).unwrap()
    else {
        panic!("free resource")
    };
    let writer = request("bob", 0, LockMode::Exclusive);
    let Acquisition::Blocked {
        ticket: Some(ticket),
        ..
    } = t.acquire(&writer, wait, now).unwrap()
    else {
        panic!("the writer queues")
    };
    // Readers keep coming, compatible with the reader holding the
    // resource, but the writer waits ahead of them: they queue (or fail
    // fast) behind it.
    for (i, who) in ["carol", "dave", "erin"].into_iter().enumerate() {
        let now = now + Duration::seconds(i as i64);
        match t.acquire(&shared(who), Queueing::default(), now).unwrap() {
            Acquisition::Blocked { conflicts, .. } => {
                assert!(conflicts.iter().all(|c| c.waiting && c.holder == "bob"));
            }
            other => panic!("a reader overtook the waiting writer: {other:?}"),
        }
        assert!(matches!(
            t.acquire(&shared(who), wait, now).unwrap(),
            Acquisition::Blocked {
                ticket: Some(_),
                ..
            }
        ));
    }
    t.release(first.id, "alice", now).unwrap();
    let retry = Queueing {
        ticket: Some(ticket),
        wait: Some(Duration::seconds(30)),
    };
    assert!(matches!(
        t.acquire(&writer, retry, now).unwrap(),
        Acquisition::Granted { .. }
    ));
    // Now the readers queued behind it are blocked by its lock, and
    // granted together once it is released.
    let writer_lock = t.list(
        &LockFilter {
            holder: Some("bob".into()),
            limit: 10,
            ..Default::default()
        },
        now,
    )[0]
    .id;
    t.release(writer_lock, "bob", now).unwrap();
    let tickets: Vec<TicketId> = t.tickets.keys().copied().collect();
    for (who, ticket) in ["carol", "dave", "erin"].into_iter().zip(tickets) {
        let q = Queueing {
            ticket: Some(ticket),
            wait: Some(Duration::seconds(30)),
        };
        assert!(matches!(
            t.acquire(&shared(who), q, now).unwrap(),
            Acquisition::Granted { .. }
        ));
    }
}
