//! The storage conformance suite (`baton-testkit`) on MySQL/MariaDB: every
//! case in a fresh database of the server at `BATON_TEST_MYSQL`.

use baton_testkit::TestStore;
use baton_testkit::databases::{Server, TestDatabase};

async fn fresh() -> Option<TestStore> {
    let db = TestDatabase::create(Server::MySql).await?;
    let store = baton_store::open(db.url())
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", db.url()));
    Some(TestStore::new(store, db))
}

mod mysql {
    baton_testkit::conformance_suite!(super::fresh);
}

/// A database migrated by a newer Baton (a migration this build does not
/// know) is refused, not used.
#[tokio::test]
async fn refuses_a_schema_newer_than_it_knows() {
    let Some(db) = TestDatabase::create(Server::MySql).await else {
        return;
    };
    drop(baton_store::open(db.url()).await.expect("first open"));
    let mut c = <sqlx::MySqlConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', true, x'00', 0)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let err = baton_store::open(db.url()).await.err().expect("refused");
    assert!(err.to_string().contains("migrat"), "{err}");
}
