//! SQLite (in progress)
use baton_core::Result;
/// SQLite store.
pub struct SqliteStore;
impl SqliteStore { /// Opens.
pub async fn open(_p: &str) -> Result<Self> { Err(baton_core::Error::invalid("db","wip")) } }
