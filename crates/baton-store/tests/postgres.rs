//! The storage conformance suite (`baton-testkit`) on PostgreSQL: every
//! case in a fresh database of the server at `BATON_TEST_POSTGRES`.

use baton_testkit::TestStore;
use baton_testkit::databases::{Server, TestDatabase};

async fn fresh() -> Option<TestStore> {
    let db = TestDatabase::create(Server::Postgres).await?;
    let store = baton_store::open(db.url())
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", db.url()));
    Some(TestStore::new(store, db))
}

mod postgres {
    baton_testkit::conformance_suite!(super::fresh);
}
