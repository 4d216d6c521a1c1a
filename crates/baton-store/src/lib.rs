//! Baton's storage backends. Each module implements
//! [`baton_core::Store`] for one database with its own SQL and migrations;
//! [`open`] picks one by URL. Behaviour is specified by the conformance
//! suite in `baton-testkit`, which every backend runs.

use std::sync::Arc;

use baton_core::{Error, Result, Store};

pub mod sqlite;

/// Opens the store at `url` and applies pending migrations.
///
/// - `sqlite://PATH` (or a bare path ending in `.db`): embedded SQLite in WAL
///   mode; the file is created if missing.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        return Ok(Arc::new(sqlite::SqliteStore::open(path).await?));
    }
    Err(Error::invalid(
        "db",
        format!("unsupported database URL {url:?}; expected sqlite://PATH"),
    ))
}
