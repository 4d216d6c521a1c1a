//! Tests of the real `baton` binary: the server is started as a child
//! process over a fresh SQLite file (or several over one PostgreSQL or
//! MariaDB database), driven over HTTP, killed and restarted. One test
//! binary; the harness is in [`harness`].

mod bench;
mod demo;
mod durability;
mod events;
mod expiry;
mod harness;
mod lock_race;
mod race;
mod record_race;
mod restart;
mod users;
