//! HTTP tests of the real server: each test boots `baton_http::serve` on
//! 127.0.0.1:0 over a fresh PostgreSQL database (`BATON_TEST_POSTGRES`) and talks to it with
//! reqwest. The same tests (in `api/`) run on every backend, one test
//! binary each (`api_sqlite`, `api_postgres`, `api_mysql`).

/// The database backend of this test binary (`None`: SQLite).
const BACKEND: Option<baton_testkit::databases::Server> =
    Some(baton_testkit::databases::Server::Postgres);

#[path = "api/audit.rs"]
mod audit;
#[path = "api/claims.rs"]
mod claims;
#[path = "api/errors.rs"]
mod errors;
#[path = "api/events.rs"]
mod events;
#[path = "api/harness.rs"]
mod harness;
#[path = "api/items.rs"]
mod items;
#[path = "api/locks.rs"]
mod locks;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/ops.rs"]
mod ops;
#[path = "api/principals.rs"]
mod principals;
#[path = "api/queues.rs"]
mod queues;
#[path = "api/records.rs"]
mod records;
