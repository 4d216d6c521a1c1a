//! Baton as a library: the [`Engine`] runs Baton's operations in-process,
//! without HTTP, over any [`Store`].
//!
//! ```no_run
//! # async fn demo() -> baton::Result<()> {
//! use baton::{Engine, Role};
//! let engine = Engine::open("sqlite://baton.db").await?;
//! let (app, _token) = engine.bootstrap_principal("billing", Role::App).await?;
//! # Ok(()) }
//! ```
//!
//! The engine owns what is not storage and not HTTP: who may do what
//! (roles), the clock, long-poll waiting for work and for locks, and the
//! background sweeper. The rules themselves are in [`baton_core::rules`]; the storage
//! in `baton-store`.

mod auth_cache;
pub mod engine;
pub mod events;
pub mod identity;
mod lease_watch;
mod lock_waiters;
mod waiters;

pub use baton_core::*;
pub use baton_store::{StoreSettings, redact};
pub use engine::{Engine, EngineSettings};
pub use events::{Event, Subscription};
pub use identity::{generate_token, hash_password, hash_token, verify_password};
