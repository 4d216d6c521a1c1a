//! Baton's storage conformance suite: the one specification of how a
//! [`Store`] behaves, run against every backend.
//!
//! The `Store` trait's doc comments and [`baton_core::rules`] say what each
//! operation means; the tests here hold every backend to it. The tests are
//! plain `pub async fn`s, one area per module ([`queue_ops`], [`lease_ops`],
//! [`refusals`], [`expiry`], [`supervision`], [`identity`], [`audit`], [`long_poll`],
//! [`concurrency`], [`batching`], [`model`] for work queues; [`lock_ops`],
//! [`lock_waiting`], [`lock_concurrency`], [`lock_model`] for the lock
//! manager; [`records`] for versioned records; [`database_clock`] for
//! stores that keep lock time by the database's clock, stamped
//! separately by [`database_clock_suite!`]). Each takes a [`TestStore`] —
//! a fresh, empty, isolated store — and drives it through [`baton::Engine`] with a
//! [`ManualClock`](baton_core::ManualClock) (see [`harness`]), or through the
//! `Store` trait directly where that is the clearer specification.
//!
//! # Plugging in a backend
//!
//! A backend provides an async factory returning a [`TestStore`] (the store
//! plus a guard that cleans up on drop) and stamps the suite out with
//! [`conformance_suite!`], inside a module named after the backend so the
//! test output reads `sqlite::claim_is_exclusive`:
//!
//! ```ignore
//! // crates/baton-store/tests/sqlite.rs
//! async fn fresh() -> baton_testkit::TestStore {
//!     baton_testkit::TestStore::in_tempdir(|dir| {
//!         let url = format!("sqlite://{}", dir.join("t.db").display());
//!         async move { baton_store::open(&url).await }
//!     })
//!     .await
//! }
//!
//! mod sqlite {
//!     baton_testkit::conformance_suite!(super::fresh);
//! }
//! ```
//!
//! A server database (PostgreSQL, MariaDB) creates a randomly named
//! database or schema in its factory and returns a guard whose `Drop`
//! removes it. Every test runs on a multi-threaded Tokio runtime with four
//! workers, so the backend's real concurrency is exercised.
//!
//! This crate deliberately does not depend on `baton-store`: stores come
//! from the factory, so a backend's own test can depend on the testkit
//! without a dependency cycle.
//!
//! [`Store`]: baton_core::Store

#![warn(missing_docs)]

use std::any::Any;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use baton_core::{Result, Store};

/// Asserts that a `Result` is an `Err` matching a pattern, printing what it
/// was otherwise. Evaluates to the error.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            Err(e) => {
                assert!(
                    matches!(&e, $pattern $(if $guard)?),
                    "expected {}, got the error {e:?}",
                    stringify!($pattern)
                );
                e
            }
            Ok(v) => panic!("expected {}, got Ok({v:?})", stringify!($pattern)),
        }
    };
}

pub mod audit;
pub mod batching;
pub mod concurrency;
pub mod database_clock;
pub mod databases;
pub mod expiry;
pub mod harness;
pub mod identity;
pub mod lease_ops;
pub mod live_events;
pub mod lock_concurrency;
pub mod lock_model;
pub mod lock_ops;
pub mod lock_waiting;
pub mod long_poll;
pub mod model;
pub mod queue_ops;
pub mod records;
pub mod refusals;
pub mod supervision;

pub use harness::Harness;

/// A fresh, empty store for one test, and whatever must live as long as it
/// (a temporary directory, a database to drop). Dropping it drops the store
/// first, then the guard.
pub struct TestStore {
    store: Arc<dyn Store>,
    // Declared after `store`: fields drop in order, so the store's
    // connections close before the guard removes the database.
    _guard: Box<dyn Any + Send>,
}

impl TestStore {
    /// Wraps a freshly created store with the guard that cleans it up on
    /// drop (a `tempfile::TempDir`, or a value whose `Drop` drops a test
    /// database). The store must be empty and not shared with any other
    /// test.
    pub fn new(store: Arc<dyn Store>, guard: impl Any + Send) -> Self {
        Self {
            store,
            _guard: Box::new(guard),
        }
    }

    /// For file-backed stores: creates a temporary directory, opens the
    /// store in it with `open`, and removes the directory on drop.
    ///
    /// # Panics
    /// When the directory cannot be created or the store cannot be opened:
    /// the test cannot run.
    pub async fn in_tempdir<F, Fut>(open: F) -> Self
    where
        F: FnOnce(&Path) -> Fut,
        Fut: Future<Output = Result<Arc<dyn Store>>>,
    {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let store = open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("opening a fresh store in {}: {e}", dir.path().display()));
        Self::new(store, dir)
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

/// Stamps out the whole conformance suite as `#[tokio::test]`s in the
/// calling module, one per case, each with a fresh store from `$factory`
/// (an `async fn() -> TestStore`, given by path). Call it inside a module
/// named after the backend.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::__with_cases!(__stamp_tests($factory));
    };
}

/// The list of cases, handed to another macro of this crate: the single
/// place a new case is registered. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($callback:ident ($($args:tt)*)) => {
        $crate::$callback! { ($($args)*)
            queue_ops::enqueue_returns_a_ready_item,
            queue_ops::claim_order_is_priority_then_oldest,
            queue_ops::delayed_item_becomes_claimable_exactly_at_its_time,
            queue_ops::delayed_item_is_promoted_by_sweep,
            queue_ops::dedupe_key_returns_the_unfinished_item,
            queue_ops::dedupe_key_is_free_again_once_done,
            queue_ops::dedupe_is_per_queue,
            queue_ops::claim_filters_by_kind,
            queue_ops::claim_on_empty_queue_returns_none,
            queue_ops::claim_is_exclusive,
            queue_ops::lease_expires_lease_seconds_after_claim,
            queue_ops::fencing_token_increases_with_every_claim,
            queue_ops::idempotent_claim_returns_the_same_lease,
            queue_ops::idempotency_key_is_per_holder,
            queue_ops::idempotent_claim_after_the_lease_ended_is_stale,
            queue_ops::idempotency_key_is_forgotten_after_retention,
            queue_ops::one_lease_per_holder_by_default,
            queue_ops::max_leases_per_holder_is_configurable,
            queue_ops::released_item_is_not_offered_back_during_cooldown,
            queue_ops::released_item_goes_to_another_operator_at_once,
            lease_ops::heartbeat_extends_the_lease,
            lease_ops::release_makes_the_item_ready,
            lease_ops::release_with_delay_schedules_the_item,
            lease_ops::complete_moves_the_item_to_done,
            lease_ops::history_records_every_event_in_order,
            lease_ops::escalation_moves_the_item_to_another_queue,
            refusals::stale_token_after_reclaim_is_refused,
            refusals::token_of_a_completed_item_is_refused,
            refusals::token_never_issued_is_refused,
            refusals::not_the_holder_is_refused,
            refusals::unknown_outcome_is_refused,
            refusals::escalate_to_needs_the_escalation_outcome,
            refusals::escalation_to_the_same_queue_is_refused,
            refusals::expired_lease_is_refused_before_any_sweep,
            refusals::roles_are_enforced,
            refusals::unknown_item_is_not_found_everywhere,
            expiry::expired_lease_is_recovered_at_claim,
            expiry::expired_lease_is_recovered_by_sweep,
            expiry::item_is_parked_after_max_attempts,
            expiry::item_is_parked_by_lazy_recovery_too,
            expiry::requeue_returns_a_parked_item_to_ready,
            expiry::requeue_of_a_non_parked_item_is_wrong_state,
            expiry::revoke_makes_the_old_token_stale,
            expiry::revoke_of_a_non_leased_item_is_wrong_state,
            expiry::sweep_is_idempotent,
            expiry::sweep_reports_became_ready_per_queue,
            supervision::list_items_filters_by_state,
            supervision::list_items_filters_by_holder,
            supervision::list_items_pages_by_keyset,
            supervision::queue_stats_count_every_state,
            supervision::queue_stats_count_an_unswept_expired_lease_as_ready,
            supervision::queue_stats_count_a_due_scheduled_item_as_ready,
            supervision::queue_config_round_trips,
            supervision::invalid_queue_config_is_refused,
            supervision::concurrent_config_changes_all_survive,
            identity::created_principal_authenticates_by_token,
            identity::duplicate_principal_is_refused,
            identity::unknown_token_authenticates_nobody,
            identity::principals_are_listed_by_name,
            identity::bootstrap_principal_is_idempotent,
            identity::tokens_are_listed_and_revoked,
            identity::passwords_are_set_and_checked,
            identity::sessions_last_until_they_expire_and_are_swept,
            identity::logout_ends_the_session_and_releases_its_locks,
            identity::concurrent_logins_get_their_own_sessions,
            identity::failed_logins_take_as_long_as_a_wrong_password,
            audit::audit_trail_shows_every_history_newest_first,
            audit::audit_filters_by_actor_subject_and_time,
            audit::audit_pages_never_skip_or_repeat,
            audit::audit_is_for_supervisors_within_limits,
            audit::throughput_counts_completions_per_bucket,
            live_events::published_events_reach_listeners_in_order,
            long_poll::waiting_claim_is_woken_by_enqueue,
            long_poll::waiting_claim_times_out_with_none,
            long_poll::waiting_claim_is_woken_by_release,
            long_poll::waiting_claim_is_woken_by_sweep,
            concurrency::many_claimers_complete_every_item_exactly_once,
            concurrency::stalled_workers_never_complete_with_a_stale_token,
            batching::simultaneous_claims_never_share_an_item,
            batching::simultaneous_claims_of_one_holder_respect_its_maximum,
            batching::simultaneous_retries_with_one_key_get_one_claim,
            batching::simultaneous_claims_respect_each_holders_cooldown,
            batching::refused_completions_do_not_disturb_the_others,
            model::random_operations_agree_with_the_rules_model,
            records::record_lifecycle_is_versioned_and_recorded,
            records::record_created_again_after_delete_keeps_counting,
            records::record_missing_is_not_found_before_any_precondition,
            records::record_write_without_precondition_is_refused_unless_last_write_wins,
            records::stale_write_is_refused_with_what_changed_and_kept,
            records::create_of_an_existing_record_is_refused,
            records::stale_patch_of_other_fields_is_merged,
            records::stale_patch_of_the_same_field_conflicts,
            records::last_write_wins_keeps_every_version,
            records::if_match_lists_and_any,
            records::records_are_listed_by_key_in_pages,
            records::record_history_pages_by_version,
            records::collection_settings_are_admin_only,
            records::conflict_objects_are_forgotten_after_retention,
            records::record_limits_are_enforced,
            records::concurrent_increments_never_lose_an_update,
            records::concurrent_creates_make_one_record,
            records::concurrent_disjoint_patches_all_merge,
            records::lock_policy_write_needs_the_writers_live_lock,
            records::lock_policy_read_write_needs_the_lock_to_read,
            lock_ops::shared_locks_share_and_exclusive_excludes,
            lock_ops::acquire_is_all_or_nothing,
            lock_ops::fencing_tokens_strictly_increase_with_every_grant,
            lock_ops::lock_expires_at_its_ttl_without_heartbeat,
            lock_ops::sweep_records_each_expiry_once,
            lock_ops::heartbeat_extends_the_expiry,
            lock_ops::max_hold_is_never_extended,
            lock_ops::release_frees_and_the_lock_says_how_it_ended,
            lock_ops::only_the_holder_acts_with_a_lock,
            lock_ops::forced_release_needs_a_supervisor_and_a_reason_and_bumps_the_token,
            lock_ops::session_logout_releases_only_that_session,
            lock_ops::upgrade_needs_the_only_sharer_and_downgrade_shares,
            lock_ops::idempotent_acquire_returns_the_same_lock,
            lock_ops::locks_are_listed_by_resource_holder_and_session,
            lock_ops::status_answers_each_resource_in_order,
            lock_ops::resource_history_records_every_event,
            lock_ops::ended_locks_are_forgotten_after_the_retention,
            lock_ops::unknown_locks_and_roles,
            lock_waiting::waiting_request_is_granted_when_the_holder_releases,
            lock_waiting::waiting_request_times_out_with_the_conflicts,
            lock_waiting::waiting_exclusive_is_not_starved_by_shared_requests,
            lock_waiting::waiting_request_is_woken_by_a_recorded_expiry,
            lock_waiting::waiting_request_is_woken_by_a_downgrade,
            lock_waiting::abandoned_request_leaves_the_queue,
            lock_waiting::waiting_request_takes_all_its_resources_at_once,
            lock_concurrency::many_lockers_never_overlap,
            lock_concurrency::concurrent_retries_with_one_key_get_one_lock,
            lock_model::random_lock_operations_agree_with_the_model,
        }
    };
}

/// Stamps out the cases of stores that take lock times from the
/// database's clock ([`database_clock`]), in the calling module, with
/// stores from `$factory` opened with that setting. For PostgreSQL and
/// MySQL; SQLite's clock is the engine's.
#[macro_export]
macro_rules! database_clock_suite {
    ($factory:path) => {
        $crate::__with_database_clock_cases!(__stamp_tests($factory));
    };
}

/// The list of database-clock cases. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_database_clock_cases {
    ($callback:ident ($($args:tt)*)) => {
        $crate::$callback! { ($($args)*)
            database_clock::lock_times_come_from_the_database_clock,
            database_clock::a_lock_expires_by_the_database_clock,
        }
    };
}

/// Expands each case into a test. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __stamp_tests {
    (($factory:path) $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 4,
                crate = "baton_testkit::__private::tokio"
            )]
            async fn $case() {
                // A factory returns a TestStore, or an Option of one that
                // is None when its database server is unavailable (and
                // has said so).
                let Some(db) = Option::<$crate::TestStore>::from($factory().await) else {
                    return;
                };
                $crate::__private::within_time_limit(
                    stringify!($case),
                    $crate::$module::$case(db),
                )
                .await;
            }
        )*
    };
}

/// Expands to the names of every case. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __case_names {
    (() $($module:ident :: $case:ident),* $(,)?) => {
        /// Every case of the suite, as `module::case`, in the order they
        /// are stamped out.
        pub const CASES: &[&str] = &[$(concat!(stringify!($module), "::", stringify!($case))),*];
    };
}

__with_cases!(__case_names());

/// Every database-clock case, as `module::case`.
pub mod database_clock_cases {
    __with_database_clock_cases!(__case_names());
}

/// Support for the macros. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;

    /// The longest a case may run before it is failed as hung.
    pub const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

    /// Runs a case, failing it if it takes longer than [`TIME_LIMIT`]
    /// (a hang in a backend should fail one test, not stall the suite).
    pub async fn within_time_limit(name: &str, case: impl std::future::Future<Output = ()>) {
        if tokio::time::timeout(TIME_LIMIT, case).await.is_err() {
            panic!("{name} did not finish within {TIME_LIMIT:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CASES;

    /// Every `pub async fn` of a case module is registered exactly once, so
    /// no case is silently left out of a backend's run.
    #[test]
    fn every_case_is_registered_once() {
        let sources = [
            ("queue_ops", include_str!("queue_ops.rs")),
            ("lease_ops", include_str!("lease_ops.rs")),
            ("refusals", include_str!("refusals.rs")),
            ("expiry", include_str!("expiry.rs")),
            ("supervision", include_str!("supervision.rs")),
            ("identity", include_str!("identity.rs")),
            ("audit", include_str!("audit.rs")),
            ("long_poll", include_str!("long_poll.rs")),
            ("concurrency", include_str!("concurrency.rs")),
            ("batching", include_str!("batching.rs")),
            ("model", include_str!("model.rs")),
            ("records", include_str!("records.rs")),
            ("lock_ops", include_str!("lock_ops.rs")),
            ("lock_waiting", include_str!("lock_waiting.rs")),
            ("lock_concurrency", include_str!("lock_concurrency.rs")),
            ("lock_model", include_str!("lock_model.rs")),
            ("database_clock", include_str!("database_clock.rs")),
            ("live_events", include_str!("live_events.rs")),
        ];
        let mut defined: Vec<String> = Vec::new();
        for (module, src) in sources {
            for line in src.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let name = rest.split('(').next().unwrap_or_default();
                    defined.push(format!("{module}::{name}"));
                }
            }
        }
        let mut registered: Vec<String> = CASES
            .iter()
            .chain(super::database_clock_cases::CASES)
            .map(|s| s.to_string())
            .collect();
        defined.sort();
        registered.sort();
        assert_eq!(defined, registered);
        // Tests are stamped into one module: case names must be unique.
        let mut names: Vec<&str> = CASES
            .iter()
            .map(|c| c.split("::").nth(1).unwrap_or(c))
            .collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "two cases share a name");
    }
}
