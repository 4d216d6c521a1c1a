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
