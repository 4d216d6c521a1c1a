//! HTTP tests of the real server: each test boots `baton_http::serve` on
//! 127.0.0.1:0 over a fresh SQLite file and talks to it with reqwest.
//! One test binary; the harness is in [`harness`].

mod claims;
mod errors;
mod harness;
mod items;
mod locks;
mod openapi;
mod ops;
mod queues;
