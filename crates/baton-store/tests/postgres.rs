//! The storage conformance suite (`baton-testkit`) on PostgreSQL: every
//! case in a fresh database of the server at `BATON_TEST_POSTGRES`.

use baton_testkit::TestStore;
use baton_testkit::databases::{Server, TestDatabase};

/// A fresh database, with lock times from the engine's (manual) clock, so
/// that the cases control time as they do on SQLite.
async fn fresh() -> Option<TestStore> {
    open(false).await
}

/// A fresh database, with lock times from the database's clock, as
/// `baton serve` runs it.
async fn fresh_database_clock() -> Option<TestStore> {
    open(true).await
}

async fn open(database_clock: bool) -> Option<TestStore> {
    let db = TestDatabase::create(Server::Postgres).await?;
    let settings = baton_store::StoreSettings {
        database_clock,
        ..baton_store::StoreSettings::default()
    };
    let store = baton_store::open_with(db.url(), &settings)
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", db.url()));
    Some(TestStore::new(store, db))
}

mod postgres {
    baton_testkit::conformance_suite!(super::fresh);
}

mod postgres_database_clock {
    baton_testkit::database_clock_suite!(super::fresh_database_clock);
}

/// A database migrated by a newer Baton (a migration this build does not
/// know) is refused, not used.
#[tokio::test]
async fn refuses_a_schema_newer_than_it_knows() {
    let Some(db) = TestDatabase::create(Server::Postgres).await else {
        return;
    };
    drop(baton_store::open(db.url()).await.expect("first open"));
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let err = baton_store::open(db.url()).await.err().expect("refused");
    assert!(err.to_string().contains("migrat"), "{err}");
}

/// The record history cannot be changed, even by hand.
#[tokio::test]
async fn record_history_is_append_only() {
    let Some(db) = TestDatabase::create(Server::Postgres).await else {
        return;
    };
    drop(baton_store::open(db.url()).await.expect("open"));
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO record_versions (collection, record_key, version, kind, actor, at, deleted, changes) \
         VALUES ('c', 'k', 1, 'create', 'a', 0, false, '[]')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    for sql in [
        "UPDATE record_versions SET actor = 'mallory'",
        "DELETE FROM record_versions",
    ] {
        let e = sqlx::query(sql).execute(&mut c).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
}
