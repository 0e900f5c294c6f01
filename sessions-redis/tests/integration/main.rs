//! sessionkit-redis against real Redis servers: the shared one at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`) under a key prefix of each test's own, and `redis-server`
//! processes the tests start on their own ports where they count commands or stop the server.

mod behaviour;
#[cfg(feature = "cluster")]
mod cluster;
mod common;
mod conformance;
mod faults;
mod round_trips;
#[cfg(feature = "sentinel")]
mod sentinel;
