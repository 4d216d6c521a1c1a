//! Baton's storage backends. Each module implements
//! [`baton_core::Store`] for one database with its own SQL and migrations;
//! [`open`] picks one by URL. Behaviour is specified by the conformance
//! suite in `baton-testkit`, which every backend runs.

use std::sync::Arc;

use baton_core::{Error, Result, Store};

mod audit;
pub mod bench;
pub mod mysql;
pub mod postgres;
mod sql;
pub mod sqlite;
mod stats;

pub use sql::{StoreSettings, redact};

/// Opens the store at `url` with default [`StoreSettings`] and applies
/// pending migrations. See [`open_with`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, &StoreSettings::default()).await
}

/// Opens the store at `url` and applies pending migrations:
///
/// - `sqlite://PATH`: embedded SQLite in WAL mode; the file is created if
///   missing. One process only.
/// - `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (or `postgresql://`):
///   PostgreSQL, shareable by several Baton servers.
/// - `mysql://USER:PASSWORD@HOST:PORT/DATABASE` (or `mariadb://`): MySQL 8
///   or MariaDB 10.6+, shareable by several Baton servers.
///
/// `settings` size the connection pool of server databases.
pub async fn open_with(url: &str, settings: &StoreSettings) -> Result<Arc<dyn Store>> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        return Ok(Arc::new(sqlite::SqliteStore::open(path).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PgStore::open(url, settings).await?));
    }
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        return Ok(Arc::new(mysql::MySqlStore::open(url, settings).await?));
    }
    Err(Error::invalid(
        "db",
        format!(
            "unsupported database URL {}; expected sqlite://PATH, postgres://... or mysql://...",
            redact(url)
        ),
    ))
}
