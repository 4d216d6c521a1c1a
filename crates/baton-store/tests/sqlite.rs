//! The storage conformance suite (`baton-testkit`) on SQLite: every case
//! on a fresh database file in its own temporary directory.

async fn fresh() -> baton_testkit::TestStore {
    baton_testkit::TestStore::in_tempdir(|dir| {
        let url = format!("sqlite://{}", dir.join("t.db").display());
        async move { baton_store::open(&url).await }
    })
    .await
}

mod sqlite {
    baton_testkit::conformance_suite!(super::fresh);
}
