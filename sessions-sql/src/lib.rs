//! A SQL session backend for sessionkit, on [sqlx](https://docs.rs/sqlx):
//! SQLite (embedded, no server), PostgreSQL, and MySQL / MariaDB.
//!
//! One type, [`SqlBackend<DB>`](SqlBackend), with the same API on every database, named for
//! each by a type alias behind its feature:
//!
//! | feature | backend | database |
//! |---|---|---|
//! | `sqlite` | [`SqliteBackend`] | SQLite, compiled in (a file, or memory) |
//! | `postgres` | [`PostgresBackend`] | PostgreSQL |
//! | `mysql` | [`MySqlBackend`] | MySQL and MariaDB |
//!
//! Each session is one row of one table (`sessions` unless told otherwise), its data encoded by
//! a [`Serializer`]: JSON by default, so other languages can read it, or `BincodeSerializer`
//! with the `bincode` feature.
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # async fn example() -> Result<(), sessionkit_core::Error> {
//! use sessionkit_core::{SessionBackend, SessionData};
//! use sessionkit_sql::SqliteBackend;
//! use std::time::Duration;
//!
//! // A file database that outlives the process: `sqlite://sessions.db`.
//! let backend = SqliteBackend::builder_from_url("sqlite::memory:")
//!     .with_table("app_sessions")
//!     .with_expire(Duration::from_secs(24 * 3600)) // for writes that bring no TTL
//!     .build()?; // checks the URL and the table name
//! backend.migrate().await?; // creates the table and its index if missing
//!
//! let id = backend.create(&SessionData::default(), None).await?;
//! assert!(backend.exists(&id).await?);
//!
//! // Delete expired rows now and then (every 10 minutes here), until stopped.
//! let cleanup = backend.spawn_cleanup(Duration::from_secs(600))?;
//! cleanup.stop().await;
//! # Ok(()) }
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
//! #     .block_on(example()).unwrap();
//! ```
//!
//! On a pool the application already has:
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sessionkit_sql::{PostgresBackend, sqlx::PgPool};
//!
//! let pool = PgPool::connect("postgres://app@db.internal/app").await?;
//! let backend = PostgresBackend::builder(pool.clone())
//!     .with_table("auth.sessions")
//!     .build()?;
//! backend.migrate().await?;
//! # Ok(()) }
//! ```
//!
//! With the middleware from `sessionkit-tower`:
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")] {
//! # use sessionkit_sql::SqliteBackend;
//! let layer = sessionkit_tower::SessionLayer::new(SqliteBackend::from_url("sqlite://sessions.db")?);
//! # }
//! # Ok::<(), sessionkit_core::Error>(())
//! ```
//!
//! # One statement, one round trip, per operation
//!
//! | operation | statement |
//! |---|---|
//! | read | `SELECT data, version FROM t WHERE id = ? AND (expires_at IS NULL OR expires_at > ?now)` |
//! | create | `INSERT INTO t (id, data, expires_at, user_id, accessed_at) VALUES (?, ?, ?, ?, ?)`, with `ON CONFLICT (id) DO NOTHING` on SQLite and PostgreSQL; on MySQL a duplicate-key error. A taken id changes nothing: a new id is minted and tried. With a per-user limit, a bound session costs the `DELETE` below |
//! | [`update`](SqlBackend::update) (a direct overwrite, for tools) | `UPDATE t SET data = ?, expires_at = ?, user_id = ?, accessed_at = ?, version = version + 1 WHERE id = ? AND version >= 0 AND (expires_at IS NULL OR expires_at > ?now)`; no row matched: [`Error::SessionGone`], nothing stored |
//! | save (`apply`: a loaded session's changes) | `UPDATE t SET data = ?, expires_at = ?, user_id = ?, accessed_at = ?, version = version + 1 WHERE id = ? AND version = ?read AND (expires_at IS NULL OR expires_at > ?now)` (a session emptied: the same with the end marker: no data, no user, `version = -1`, expiring in a minute). No row matched: another save came in between; the row is read again, the session's changes applied to it, and the statement sent again (after a first collision, one save of this process at a time, for up to 5 seconds); a row gone is [`Error::SessionGone`] |
//! | remove (a logout) | `UPDATE t SET data = '', expires_at = ?now + 60 s, user_id = NULL, version = -1 WHERE id = ? AND version >= 0 AND (expires_at IS NULL OR expires_at > ?now)`: the end marker, which tells a request that overlapped the logout from one with a long-dead cookie for a minute ([`Lookup::Ended`]); the clean-up deletes it |
//! | a per-user limit ([`with_max_sessions_per_user`](https://docs.rs/sessionkit-tower/latest/sessionkit_tower/struct.SessionLayerBuilder.html#method.with_max_sessions_per_user)) | after a save that binds a session: `DELETE FROM t WHERE id IN (SELECT id FROM t WHERE user_id = ? AND id <> ?bound AND version >= 0 AND (expires_at IS NULL OR expires_at > ?now) ORDER BY accessed_at DESC, id OFFSET ?max-1)` (on MySQL through a derived table): the user's least recently used sessions beyond the limit |
//! | exists | `SELECT 1 FROM t WHERE id = ? AND version >= 0 AND (expires_at IS NULL OR expires_at > ?now)` |
//! | a user's session ids ([`user_session_ids`](SessionBackend::user_session_ids)) | `SELECT id FROM t WHERE user_id = ? AND (expires_at IS NULL OR expires_at > ?now)` |
//! | a user's sessions ([`user_sessions`](SessionBackend::user_sessions)) | `SELECT id, data, version FROM t WHERE user_id = ? AND (expires_at IS NULL OR expires_at > ?now)`; each row decoded as a read decodes it, most recently used first |
//! | revoke a user's sessions ([`revoke_user_sessions`](SessionBackend::revoke_user_sessions)) | `DELETE FROM t WHERE user_id = ? AND id <> ?keep AND (expires_at IS NULL OR expires_at > ?now)` (without `id <> ?keep` when no session is kept), then the user's ids, to see none is left (a session moving to a new id meanwhile can escape one `DELETE`: it runs again until none is left); the count is of live sessions, expired ones are left to the cleanup |
//! | revoke one ([`revoke_user_session`](SessionBackend::revoke_user_session)) | the user's ids as above, to find the one the device id names, then `DELETE FROM t WHERE user_id = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?now)`: two statements, since the device id is a hash the database cannot compute |
//! | lock (a [locked route](#locked-routes)'s [`try_lock`](SessionBackend::try_lock)) | `UPDATE t SET lock_token = ?token, lock_until = ?now+lease WHERE id = ? AND (lock_token IS NULL OR lock_until <= ?now OR lock_token = ?token)`; one row matched: taken. None: `SELECT 1 FROM t WHERE id = ?`, which tells a lock another request holds (a row: not taken) from an id under which no row is stored (nothing to lock: taken) |
//! | unlock ([`unlock`](SessionBackend::unlock)) | `UPDATE t SET lock_token = NULL, lock_until = NULL WHERE id = ? AND lock_token = ?token` |
//! | renewal ([`renew_lock`](SessionBackend::renew_lock): before a locked request's login moves the session, or its `delete()` ends it) | `UPDATE t SET lock_token = ?token, lock_until = ?now+lease WHERE id = ? AND lock_until > ?now AND lock_token = ?token`; no row matched: the `SELECT 1` above tells a lost lock (a row) from a row gone meanwhile (nothing to guard) |
//! | locked save ([`apply_locked`](SessionBackend::apply_locked)) | the save's `UPDATE` (or its end marker's), with `lock_token = NULL, lock_until = NULL` added to the `SET` and `AND lock_token = ?token AND lock_until > ?now` to the `WHERE`: stored only while the request holds the lock, which the same statement gives back. No row matched: `SELECT lock_token, lock_until, version, data FROM t WHERE id = ?` tells why: the lock is another token's or its lease ran out ([`Error::LockLost`], nothing stored), no row is left ([`Error::SessionGone`]), the row holds this save's own write with the lock given back (the statement was sent again after its answer was lost: stored), or the lock is still the request's and a save of an unlocked route came in between: then the row is read again and the locked `UPDATE` sent again, as for a save |
//!
//! Creates never overwrite a row and updates never bring back one that was removed or has
//! expired: the database decides both in the statement that stores the data. On MySQL and
//! MariaDB the update's row count is the number of rows *matched*, also when the new values
//! equal the old ones, because sqlx connects with `CLIENT_FOUND_ROWS`.
//!
//! Statements are prepared once per connection and reused. A sqlx pool sends a ping round
//! trip on every connection given back to it, so the backend does not give a connection back
//! after each operation: it keeps the connections it has used, at most
//! [`max_connections`](SqlBackendBuilder::with_max_connections) of them, and hands them from one
//! operation to the next itself. Connections go back to the pool when they were unused for 5
//! seconds (so after a burst the rest of the application gets its pool back), when a
//! statement fails in a way that leaves the connection in doubt, when they were held for
//! longer than the pool's `max_lifetime`, when the pool is closed (`pool.close().await` is
//! never kept waiting), and when the backend is dropped. While held, they are not available
//! to other users of the pool. If a kept connection turns out to be dead (the database
//! restarted), the others are given back too and the statement is sent once more on a new
//! connection; every statement above is safe to repeat. (In the rare case where a create was
//! stored but its reply was lost, the repeat finds the id taken and stores the session under
//! a new id; the first row is left to expire.)
//!
//! # Schema
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `id` | text, primary key | the session id: 1 to 128 visible ASCII characters |
//! | `data` | bytes | the record, as the serializer encoded it |
//! | `expires_at` | 64-bit integer, indexed, `NULL` = never | when the row expires, in **Unix milliseconds** (UTC) |
//! | `version` | 64-bit integer, default 0 | bumped by every update: how a save notices another save in between; -1 for an end marker |
//! | `accessed_at` | 64-bit integer, `NULL` = never written | the session's last use, in Unix seconds: which sessions a per-user limit ends first |
//! | `user_id` | text (MySQL: `VARBINARY(255)`), indexed, `NULL` = none | the user the session is bound to ([`SessionData::user`]), written by every create, update and save; how a user's sessions are found |
//! | `lock_token` | text (MySQL: `VARCHAR(64)` ASCII, `ascii_bin`), `NULL` = not locked | the token of the request holding the session's lock, on a [locked route](#locked-routes) |
//! | `lock_until` | 64-bit integer, `NULL` = not locked | when that lock's lease runs out, in **Unix milliseconds**, by the application's clock like `expires_at` |
//!
//! "Now" is taken from the application's clock and bound into each statement, so the three
//! databases behave the same whatever their time zone settings; run the application servers
//! with synchronized clocks.
//!
//! A session's save applies what the request changed (keys set or removed, a clear) to the
//! row as it is stored at that moment, so two overlapping requests that change different keys
//! both keep their change; the `version` column, bumped by every update, tells the save
//! whether another one came in between. Uncontended, a request that changes its session costs
//! the same two statements as before: its read, and one update.
//!
//! A session bound to a user (`Session::set_user`) stores the user in its record, as every
//! backend does, and in the `user_id` column, which the same create, update or save statement
//! writes: binding, unbinding or never binding a user costs no statement more. Listing and
//! revoking a user's sessions search the index on `user_id` (`<table>_user_id_idx`; on SQLite
//! and PostgreSQL a partial index, of the rows bound to a user only). A revoked session's row
//! is deleted, so it reads as missing, and a save racing the revocation finds no row to update
//! ([`Error::SessionGone`]) instead of bringing it back. Users compare exactly, byte for byte;
//! a record whose user is longer than [`MAX_USER_LEN`] bytes is refused with
//! [`Error::InvalidUser`].
//!
//! [`migrate`](SqlBackend::migrate) creates the table and the indexes when they are missing
//! (it never drops or changes anything). On a large PostgreSQL table, `CREATE INDEX` blocks writes to the table while it builds the
//! index; to avoid that, create the index beforehand with `CREATE INDEX CONCURRENTLY` under
//! the same name (and definition), and `migrate` finds it there.
//! To run your own migrations instead, this is the DDL it runs for the default table name
//! `sessions` (the indexes are named `<table>_expires_at_idx` and `<table>_user_id_idx`):
//!
//! SQLite (`WITHOUT ROWID`: rows live in the primary key's B-tree, so finding a session by id
//! is one tree search instead of two; this suits rows of a few hundred bytes, as sessions
//! usually are. A table made without it works the same, a little slower):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS "sessions" (id TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL, expires_at INTEGER, version INTEGER NOT NULL DEFAULT 0, accessed_at INTEGER, user_id TEXT, lock_token TEXT, lock_until INTEGER) WITHOUT ROWID;
//! CREATE INDEX IF NOT EXISTS "sessions_expires_at_idx" ON "sessions" (expires_at);
//! CREATE INDEX IF NOT EXISTS "sessions_user_id_idx" ON "sessions" (user_id) WHERE user_id IS NOT NULL;
//! ```
//!
//! PostgreSQL:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS "sessions" (id TEXT PRIMARY KEY, data BYTEA NOT NULL, expires_at BIGINT, version BIGINT NOT NULL DEFAULT 0, accessed_at BIGINT, user_id TEXT, lock_token TEXT, lock_until BIGINT);
//! CREATE INDEX IF NOT EXISTS "sessions_expires_at_idx" ON "sessions" (expires_at);
//! CREATE INDEX IF NOT EXISTS "sessions_user_id_idx" ON "sessions" (user_id) WHERE user_id IS NOT NULL;
//! ```
//!
//! MySQL / MariaDB (a binary collation, so ids compare exactly, case included; `user_id` is
//! `VARBINARY`, so users compare byte for byte, trailing spaces included, which a `_bin`
//! collation of a character set would ignore, and its 255 bytes fit an index in any InnoDB row
//! format):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS `sessions` (id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, data LONGBLOB NOT NULL, expires_at BIGINT NULL, version BIGINT NOT NULL DEFAULT 0, accessed_at BIGINT NULL, user_id VARBINARY(255) NULL, lock_token VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL, lock_until BIGINT NULL, INDEX `sessions_expires_at_idx` (expires_at), INDEX `sessions_user_id_idx` (user_id));
//! ```
//!
//! A table made before the lock columns were added (by an earlier build of this crate, or
//! from an earlier copy of this DDL) serves every operation but those of locked routes,
//! which need the two columns added:
//!
//! ```sql
//! -- SQLite
//! ALTER TABLE "sessions" ADD COLUMN lock_token TEXT;
//! ALTER TABLE "sessions" ADD COLUMN lock_until INTEGER;
//! -- PostgreSQL
//! ALTER TABLE "sessions" ADD COLUMN lock_token TEXT, ADD COLUMN lock_until BIGINT;
//! -- MySQL / MariaDB
//! ALTER TABLE `sessions` ADD COLUMN lock_token VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL, ADD COLUMN lock_until BIGINT NULL;
//! ```
//!
//! Table names are checked when the backend is built
//! ([`with_table`](SqlBackendBuilder::with_table), then `build()`): `name` or `schema.name`,
//! each part 1 to 48 ASCII letters, digits or `_`, not starting with a digit. Anything else is
//! [`Error::Config`]; the name is never written into SQL unchecked. Names are quoted in SQL,
//! so their case is kept as given.
//!
//! Ids that cannot be stored (empty, longer than 128 bytes, or holding anything but visible
//! ASCII: no ids this backend or a client following the cookie rules makes) read as missing,
//! do not exist and cannot be updated, without a statement being sent. A custom
//! [id generator](SqlBackendBuilder::with_id_generator) must make storable ids.
//!
//! # Locked routes
//!
//! On a route behind `SessionLayer::lock` (sessionkit-tower), the requests of one session
//! run one at a time, across application instances: the lock is kept in the session's own
//! row (`lock_token`, `lock_until`), and taken, checked and given back by single statements
//! (see the table above). No transaction is held while the handler runs: a held lock costs
//! no connection, and the lock of a request that never gives it back (a crashed instance)
//! ends with its lease, which the application's clock measures.
//!
//! A locked request that writes its session costs three statements: the `UPDATE` taking the
//! lock, the read, and the fenced save, which gives the lock back in the same statement:
//! one statement more than an unlocked save. A locked request that saves nothing costs the
//! lock and the unlock, around its read. While another request holds the lock, each try to
//! take it costs the `UPDATE` and the `SELECT` that tells a held lock from a missing row
//! (the session layer's waiters of one process take turns, and only the first asks). A save
//! after the request's lease ran out stores nothing ([`Error::LockLost`]): the next holder
//! may have saved meanwhile. Writes of unlocked routes to the same session (saves, logouts,
//! logins) do not wait for the lock; a locked save that meets one re-applies its changes
//! on top of it, as any save does.
//!
//! # Expiry and cleanup
//!
//! Every write sets `expires_at` anew, from the write's TTL (the session layer passes its
//! `max_age`), or else the backend's [`expire`](SqlBackendBuilder::with_expire), or else `NULL`:
//! a row that never expires. Expired rows read as missing at once; they are deleted by
//! [`delete_expired`](SqlBackend::delete_expired), in batches of
//! [1000 rows](SqlBackendBuilder::with_cleanup_batch_size) per statement so no statement holds
//! locks for long, or by a task [`spawn_cleanup`](SqlBackend::spawn_cleanup) starts, which runs it
//! now and then every period until its [`CleanupTask`] is stopped or dropped (the task is
//! sessionkit-core's [`spawn_cleanup`](sessionkit_core::cleanup::spawn_cleanup) over this
//! backend's [`ExpiredDeletion`]).
//!
//! Several application instances may run the cleanup at once: on PostgreSQL each batch skips
//! rows another cleaner has locked (`FOR UPDATE SKIP LOCKED`); on MySQL and SQLite batches
//! wait for each other's locks, always taken in the same order. A statement the database
//! fails on a lock conflict (deadlock, lock wait timeout, `SQLITE_BUSY`) changed nothing and
//! is sent again, a few times, before an error is returned.
//!
//! # Failures
//!
//! Nothing here panics. Every failure is [`Error::Backend`] with a message that starts with
//! the database's name and says what failed:
//!
//! - database unreachable: `postgres: could not connect to the database within 5s: ...`
//!   (the cause, such as "Connection refused", follows);
//! - table missing: `sqlite: the sessions table "sessions" does not exist: run migrate() ...`;
//! - any other failed statement names the operation, the table and the session id with most
//!   of it masked (ids are bearer secrets and messages end up in logs).
//!
//! A row the serializer cannot decode (written by another serializer or application, a stored
//! type that changed, a manual edit) reads as no session by default: a `tracing` warning names
//! the table, the masked id and the decode error, the row is deleted, and the client starts a
//! fresh session instead of getting a 500 until the row expires.
//! [`with_corrupt_records(CorruptRecords::Fail)`](SqlBackendBuilder::with_corrupt_records)
//! makes such a read fail with [`Error::Serialization`] instead, whose source is a
//! [`CorruptRecord`](sessionkit_core::store::CorruptRecord) naming the table and the masked id.
//!
//! # Pools
//!
//! [`from_url`](SqlBackend::from_url) makes a pool with sqlx's defaults (10 connections) and a
//! 5 s acquire timeout ([`DEFAULT_ACQUIRE_TIMEOUT`]); it connects on first use and must be
//! called inside a tokio runtime. A SQLite URL creates the file when it is missing and opens
//! it in WAL mode with `synchronous = NORMAL` (many small writes without an fsync each); a
//! `sqlite::memory:` database lives as long as the pool. For other settings (TLS, pool size,
//! timeouts, SQLite's journal mode) build a pool with sqlx and pass it to
//! [`from_pool`](SqlBackend::from_pool); [`sqlx`] is re-exported so the versions match. TLS
//! needs one of sqlx's `tls-*` features, enabled in your own `Cargo.toml`.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sqlite` | off | [`SqliteBackend`], with SQLite compiled in (sqlx's bundled `libsqlite3-sys`) |
//! | `postgres` | off | [`PostgresBackend`] |
//! | `mysql` | off | [`MySqlBackend`], for MySQL and MariaDB |
//! | `bincode` | off | `sessionkit_core::serializer::BincodeSerializer`, a compact binary record format |
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod conns;
mod driver;
mod table;

use conns::{Conns, LeaseError};
use driver::{Driver, Failure, Statements};
use sessionkit_core::serializer::JsonSerializer;
use sessionkit_core::store::{self, Contention, Decoded, Turns};
use sessionkit_core::{
    Changes, Clock, DeviceId, ENDED_GRACE, Error, IdGenerator, Lookup, MAX_USER_LEN, Revision,
    Serializer, SessionBackend, SessionData, UserSession, async_trait,
};

/// How a read treats a row the serializer cannot decode (re-exported from `sessionkit-core`).
pub use sessionkit_core::store::CorruptRecords;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use table::TableName;

pub use sessionkit_core::cleanup::{CleanupTask, ExpiredDeletion};
pub use sqlx;

/// The table used unless [`with_table`](SqlBackendBuilder::with_table) names another.
pub const DEFAULT_TABLE: &str = "sessions";

/// The acquire timeout of pools made by [`from_url`](SqlBackend::from_url): how long an
/// operation waits for a connection (connecting included) before it fails.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many expired rows one cleanup statement deletes at most, unless
/// [`with_cleanup_batch_size`](SqlBackendBuilder::with_cleanup_batch_size) sets another.
pub const DEFAULT_CLEANUP_BATCH: u32 = 1000;

/// The longest session id the backend stores, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// How many times a statement is sent when the database fails it on a lock conflict.
const TRANSIENT_ATTEMPTS: u32 = 3;

/// Why an operation failed, before it is turned into an [`Error`].
enum OpError {
    Lease(LeaseError),
    Statement(Failure, sqlx::Error),
}

/// Run one statement on a held connection: `|conn| future` is the statement, sent again on a
/// new connection when a kept one turns out dead, and a few times on lock conflicts.
/// Evaluates to `Result<T, OpError>`. A macro, not a function: the statement's future borrows
/// the connection, which a closure cannot say in a way that keeps the future `Send`.
macro_rules! run {
    ($shared:expr, |$conn:ident| $statement:expr) => {{
        let conns = &$shared.conns;
        let mut fresh = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut lease = match conns.lease(fresh).await {
                Ok(lease) => lease,
                // Opening a connection can meet a lock too: SQLite turning a file to WAL
                // while another process opens it answers "database is locked" at once.
                Err(LeaseError::Pool(e))
                    if attempt < TRANSIENT_ATTEMPTS
                        && matches!(DB::classify(&e), Failure::Transient) =>
                {
                    tracing::debug!(error = %e, "sessionkit-sql: a lock conflict opening a connection; trying again");
                    Box::pin(tokio::time::sleep(Duration::from_millis(10 << attempt))).await;
                    continue;
                }
                Err(e) => break Err(OpError::Lease(e)),
            };
            let result = {
                let $conn = lease.conn();
                $statement.await
            };
            match result {
                Ok(value) => {
                    lease.keep();
                    break Ok(value);
                }
                Err(e) => match DB::classify(&e) {
                    Failure::Connection => {
                        let reused = lease.reused;
                        drop(lease); // back to the pool, which checks it
                        if reused && !fresh {
                            // A connection kept here died (the database restarted?): the
                            // others likely did too. Once more on a new one.
                            conns.release_idle();
                            fresh = true;
                            continue;
                        }
                        break Err(OpError::Statement(Failure::Connection, e));
                    }
                    Failure::Transient if attempt < TRANSIENT_ATTEMPTS => {
                        tracing::debug!(error = %e, "sessionkit-sql: a lock conflict; sending the statement again");
                        lease.keep();
                        Box::pin(tokio::time::sleep(Duration::from_millis(10 << attempt))).await;
                    }
                    failure => {
                        lease.keep();
                        break Err(OpError::Statement(failure, e));
                    }
                },
            }
        }
    }};
}

/// A database this crate stores sessions in: [`sqlx::Sqlite`], [`sqlx::Postgres`] or
/// [`sqlx::MySql`], each behind its feature. Sealed: the SQL for each is written here.
pub trait SqlDatabase: Driver {}

mod builder;
mod cleanup;
mod migrate;

pub use builder::SqlBackendBuilder;
use builder::url_pool;

#[cfg(feature = "sqlite")]
impl SqlDatabase for sqlx::Sqlite {}
#[cfg(feature = "postgres")]
impl SqlDatabase for sqlx::Postgres {}
#[cfg(feature = "mysql")]
impl SqlDatabase for sqlx::MySql {}

/// Sessions in SQLite (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub type SqliteBackend<S = JsonSerializer> = SqlBackend<sqlx::Sqlite, S>;
/// Sessions in PostgreSQL (feature `postgres`).
#[cfg(feature = "postgres")]
pub type PostgresBackend<S = JsonSerializer> = SqlBackend<sqlx::Postgres, S>;
/// Sessions in MySQL or MariaDB (feature `mysql`).
#[cfg(feature = "mysql")]
pub type MySqlBackend<S = JsonSerializer> = SqlBackend<sqlx::MySql, S>;

/// What the operations and the cleanup task share.
struct Shared<DB: SqlDatabase> {
    conns: Arc<Conns<DB>>,
    table: TableName,
    sql: Statements,
    batch: u32,
    /// Rows expire by this clock: the time of a statement is a parameter, never the
    /// database's `now()`.
    clock: Clock,
    /// Where this process's saves of one session take turns when they keep colliding.
    turns: Arc<Turns>,
    /// The most sessions one user keeps (0: no limit), shared by clones.
    max_per_user: AtomicUsize,
}

impl<DB: SqlDatabase> Shared<DB> {
    /// Unix milliseconds by the backend's clock.
    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.unix_millis()).unwrap_or(i64::MAX)
    }
}

/// Sessions stored in a SQL table. See the [crate docs](crate).
///
/// `DB` is the database ([`SqliteBackend`], [`PostgresBackend`] and [`MySqlBackend`] name
/// it); `S` is the record format, [`JsonSerializer`] unless
/// [`with_serializer`](SqlBackendBuilder::with_serializer) sets another: any [`Serializer`], an
/// `Arc<dyn Serializer>` included.
///
/// Cloning is cheap: clones share the pool and the connections the backend holds.
pub struct SqlBackend<DB: SqlDatabase, S = JsonSerializer> {
    shared: Arc<Shared<DB>>,
    serializer: S,
    expire: Option<Duration>,
    ids: Option<IdGenerator>,
    corrupt: CorruptRecords,
}

impl<DB: SqlDatabase, S: Clone> Clone for SqlBackend<DB, S> {
    fn clone(&self) -> Self {
        SqlBackend {
            shared: Arc::clone(&self.shared),
            serializer: self.serializer.clone(),
            expire: self.expire,
            ids: self.ids.clone(),
            corrupt: self.corrupt,
        }
    }
}

impl<DB: SqlDatabase, S> fmt::Debug for SqlBackend<DB, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlBackend")
            .field("database", &DB::LABEL)
            .field("table", &self.shared.table)
            .field("max_connections", &self.shared.conns.max())
            .field("expire", &self.expire)
            .field("cleanup_batch_size", &self.shared.batch)
            .field("serializer", &std::any::type_name::<S>())
            .field("corrupt_records", &self.corrupt)
            .finish_non_exhaustive()
    }
}

impl<DB: SqlDatabase> SqlBackend<DB, JsonSerializer> {
    /// A backend on an existing sqlx pool, which it may share with the rest of the
    /// application, with the default options. It keeps at most half of the pool's
    /// `max_connections` (at least one) checked out between operations; see
    /// [`with_max_connections`](SqlBackendBuilder::with_max_connections).
    ///
    /// Nothing is checked yet: call [`migrate`](Self::migrate) or run the DDL yourself.
    pub fn from_pool(pool: sqlx::Pool<DB>) -> Self {
        Self::builder(pool)
            .build()
            .unwrap_or_else(|_| unreachable!("a pool and the default table build"))
    }

    /// A backend on a new pool for `url`, of its own, that connects on first use, with the
    /// default options: `sqlite://path/to/file.db` (created when missing) or
    /// `sqlite::memory:`, `postgres://user:password@host:port/database`,
    /// `mysql://user:password@host:port/database`.
    ///
    /// The pool has sqlx's defaults and a [`DEFAULT_ACQUIRE_TIMEOUT`]; the backend may keep
    /// all its connections. A URL that cannot be parsed, or a call outside a tokio runtime,
    /// is [`Error::Config`].
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Self::builder_from_url(url).build()
    }

    /// Configure a backend on an existing pool (as [`from_pool`](Self::from_pool)): set the
    /// options on the builder, then [`build`](SqlBackendBuilder::build) checks them at once.
    pub fn builder(pool: sqlx::Pool<DB>) -> SqlBackendBuilder<DB> {
        let max = (pool.options().get_max_connections() / 2).max(1) as usize;
        SqlBackendBuilder::new(Ok((pool, max)))
    }

    /// Configure a backend on a new pool for `url` (as [`from_url`](Self::from_url)): set the
    /// options on the builder, then [`build`](SqlBackendBuilder::build) checks them, the URL
    /// included, at once.
    pub fn builder_from_url(url: &str) -> SqlBackendBuilder<DB> {
        SqlBackendBuilder::new(url_pool::<DB>(url))
    }
}

impl<DB: SqlDatabase, S> SqlBackend<DB, S> {
    /// The table name, as given (`name` or `schema.name`).
    pub fn table(&self) -> String {
        self.shared.table.to_string()
    }

    /// The pool the backend draws its connections from. The connections the backend holds
    /// (at most [`max_connections`](SqlBackendBuilder::with_max_connections)) are not available
    /// to other users of the pool until they go back to it.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        self.shared.conns.pool()
    }

    /// The TTL used for writes that bring none.
    pub fn expire(&self) -> Option<Duration> {
        self.expire
    }

    /// The serializer.
    pub fn serializer(&self) -> &S {
        &self.serializer
    }

    /// How many connections the backend may keep checked out.
    pub fn max_connections(&self) -> usize {
        self.shared.conns.max()
    }

    fn generate(&self) -> String {
        match &self.ids {
            Some(ids) => ids(),
            None => sessionkit_core::generate_id(),
        }
    }

    fn expires_at(&self, ttl: Option<Duration>, now: i64) -> Option<i64> {
        ttl.or(self.expire).map(|ttl| {
            let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
            now.saturating_add(ms)
        })
    }
}

impl<DB: SqlDatabase> Shared<DB> {
    /// Turn a failure into an [`Error::Backend`] naming the database, the operation, the
    /// table and (masked) the session.
    async fn error(&self, e: OpError, what: &str, id: Option<&str>) -> Error {
        let db = DB::LABEL;
        let table = &self.table;
        match e {
            // Boxed: the diagnosis may open a connection, a large future that would otherwise
            // sit inside every operation's future (and be copied with it) for this rare case.
            OpError::Lease(LeaseError::TimedOut { all_held_busy }) => Error::backend(format!(
                "{db}: {}",
                Box::pin(self.conns.explain_timeout(all_held_busy)).await
            )),
            OpError::Lease(LeaseError::Pool(sqlx::Error::PoolClosed)) => {
                Error::backend(format!("{db}: the connection pool is closed"))
            }
            OpError::Lease(LeaseError::Pool(e)) => Error::backend_with(
                format!("{db}: could not get a connection to the database: {e}"),
                e,
            ),
            OpError::Statement(Failure::MissingTable, e) => Error::backend_with(
                format!(
                    "{db}: the sessions table \"{table}\" does not exist: run migrate() once, or \
                     create it with the DDL in the sessionkit-sql docs ({e})"
                ),
                e,
            ),
            OpError::Statement(failure, e) => {
                let session = id
                    .map(|id| format!(" of session {}", store::masked(id)))
                    .unwrap_or_default();
                let why = match failure {
                    Failure::Connection => "the connection to the database failed",
                    Failure::Transient => "it kept failing on lock conflicts",
                    _ => "failed",
                };
                Error::backend_with(
                    format!("{db}: {what}{session} on table \"{table}\": {why}: {e}"),
                    e,
                )
            }
        }
    }
}

/// Whether the backend can store `id` (see [Schema](crate#schema)); others are never sent.
fn storable(id: &str) -> bool {
    // Visible ASCII (`0x21..=0x7E`).
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The user `data` is bound to, as the `user_id` column stores it. A user longer than
/// [`MAX_USER_LEN`] bytes (which `Session::set_user` refuses) is [`Error::InvalidUser`]:
/// MySQL's column could not hold it, and no database is asked to.
fn user_of(data: &SessionData) -> Result<Option<&str>, Error> {
    match data.user() {
        Some(user) if user.len() > MAX_USER_LEN => Err(Error::InvalidUser { len: user.len() }),
        user => Ok(user),
    }
}

/// The longest lock token the `lock_token` column holds, in bytes (the session layer's are 32).
const MAX_TOKEN_LEN: usize = 64;

/// Whether the `lock_token` column can hold `token`: 1 to [`MAX_TOKEN_LEN`] visible ASCII
/// characters.
fn lock_token_fits(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN && storable(token)
}

/// An ended session's row for [`ENDED_GRACE`] (a logout, a login that moved it, a save that
/// emptied it): version -1, no data, no user. It reads as no session, no statement but the
/// read matches it (`version >= 0`, or a version a read gave), `lookup` answers
/// [`Lookup::Ended`] for it, and the clean-up deletes it with the expired rows.
const ENDED_DATA: &[u8] = b"";

/// A session's last use (Unix seconds) for the `accessed_at` column.
fn unix_secs(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// [`ENDED_GRACE`] in milliseconds, the life of an end marker.
fn grace_ms() -> i64 {
    i64::try_from(ENDED_GRACE.as_millis()).unwrap_or(i64::MAX)
}

impl<DB: SqlDatabase, S: Serializer> SqlBackend<DB, S> {
    /// The row of `id` as stored now, with `changes` applied: what a save stores when the row
    /// changed since its session read it. [`Error::SessionGone`] when it is gone.
    async fn current(
        &self,
        id: &str,
        changes: &Changes,
        accessed: u64,
    ) -> Result<(i64, SessionData), Error> {
        match self.read(id).await? {
            Some(current) => {
                let version = current
                    .revision()
                    .and_then(Revision::as_number)
                    .unwrap_or_default();
                Ok((version, changes.applied_to(&current, accessed)))
            }
            None => Err(Error::SessionGone),
        }
    }

    /// A session's save (`apply`), and with `lock` (a token) the locked route's save
    /// (`apply_locked`): the conditional update, sent again on the row as stored now while
    /// other saves come in between. The locked statements also require the token's lock and
    /// give it back; when one matches no row, [`still_locked`](Self::still_locked) tells a
    /// lost lock or a gone row from another save in between (a save of an unlocked route).
    async fn save(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
        lock: Option<&str>,
    ) -> Result<Option<String>, Error> {
        if !storable(id) {
            return Err(Error::SessionGone);
        }
        let shared = &*self.shared;
        let accessed = session.last_access_unix();
        let (mut version, mut merged) = match session.revision().and_then(Revision::as_number) {
            // The session is the loaded row with the changes made.
            Some(version) => (version, session.clone()),
            None => self.current(id, changes, accessed).await?,
        };
        let (apply, end_version) = match lock {
            Some(_) => (&shared.sql.locks.apply, &shared.sql.locks.end_version),
            None => (&shared.sql.apply, &shared.sql.end_version),
        };
        let mut contention = Contention::default();
        while contention.try_again() {
            let now = self.shared.now_ms();
            // What the statement stores, and the version it leaves: how a locked save sent
            // again after its answer was lost knows its own write.
            let (matched, written) = if merged.is_empty() {
                // Emptied: the row becomes the end marker for ENDED_GRACE.
                let until = Some(now.saturating_add(grace_ms()));
                let matched = run!(shared, |conn| DB::apply(
                    conn,
                    end_version,
                    id,
                    ENDED_DATA,
                    until,
                    None,
                    0,
                    now,
                    version,
                    lock
                ));
                (matched, (-1, ENDED_DATA.to_vec()))
            } else {
                let user = user_of(&merged)?;
                let value = self.serializer.serialize(&merged)?;
                let expires_at = self.expires_at(ttl, now);
                let matched = run!(shared, |conn| DB::apply(
                    conn,
                    apply,
                    id,
                    &value,
                    expires_at,
                    user,
                    unix_secs(merged.last_access_unix()),
                    now,
                    version,
                    lock
                ));
                (matched, (version.saturating_add(1), value))
            };
            let matched = match (matched, lock) {
                // Lost the lock, or the row, rather than met another save? Or stored by a
                // first sending whose answer was lost?
                (Ok(0), Some(token)) => match self.still_locked(id, token, &written).await? {
                    true => Ok(1),
                    false => Ok(0),
                },
                (matched, _) => matched,
            };
            match matched {
                Ok(0) => {
                    tracing::debug!(
                        store = DB::LABEL,
                        "another save came in between; applying the changes again"
                    );
                    contention.collided(&shared.turns, id).await;
                    (version, merged) = self.current(id, changes, accessed).await?;
                }
                Ok(_) if merged.is_empty() => return Ok(None),
                Ok(_) => {
                    if let Some(user) = changes.binds_user() {
                        self.cap(user, id).await?;
                    }
                    return Ok(Some(id.to_owned()));
                }
                Err(e) => return Err(shared.error(e, "save", Some(id)).await),
            }
        }
        Err(Error::backend(format!(
            "{}: {} saves of session {} in a row found another save in between; gave up",
            DB::LABEL,
            contention.tries(),
            store::masked(id)
        )))
    }

    /// Run a lock statement `sql` (taking or renewing the lock of `id` for `token`, until
    /// `lease` from now): `true` when it matched the row. When it matched none, one `SELECT`
    /// more tells a lock another token holds, or one lost (a row: `false`), from an id under
    /// which no row is stored: a cookie naming no session (made up, or its row deleted),
    /// whose request starts a new session under a new id: nothing to guard (`true`).
    async fn lock_row(
        &self,
        sql: &str,
        what: &str,
        id: &str,
        token: &str,
        lease: Duration,
    ) -> Result<bool, Error> {
        let shared = &*self.shared;
        let now = shared.now_ms();
        // A lease too long to represent never runs out.
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1);
        let until = now.saturating_add(lease_ms);
        match run!(shared, |conn| DB::lock(conn, sql, id, token, until, now)) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(shared.error(e, what, Some(id)).await),
        }
        match run!(shared, |conn| DB::fetch_exists(
            conn,
            &shared.sql.locks.present,
            id,
            None
        )) {
            Ok(present) => Ok(!present),
            Err(e) => Err(shared.error(e, what, Some(id)).await),
        }
    }

    /// Why a locked save matched no row, from one `SELECT` of the row's lock:
    /// [`Error::LockLost`] when `token` no longer holds it (another token took it, or its
    /// lease ran out), [`Error::SessionGone`] when no row is stored under `id`; `Ok(false)`
    /// when the lock is still the token's, so another save came in between; `Ok(true)` when
    /// the row holds what this save writes, at the version it leaves (`written`), with the
    /// lock given back: a first sending of the statement stored it, and its answer was lost
    /// with its connection.
    async fn still_locked(
        &self,
        id: &str,
        token: &str,
        written: &(i64, Vec<u8>),
    ) -> Result<bool, Error> {
        let shared = &*self.shared;
        let state = match run!(shared, |conn| DB::fetch_lock(
            conn,
            &shared.sql.locks.state,
            id
        )) {
            Ok(state) => state,
            Err(e) => return Err(shared.error(e, "save", Some(id)).await),
        };
        let now = shared.now_ms();
        match state {
            None => Err(Error::SessionGone),
            Some((Some(holder), Some(until), _, _)) if holder == token && until > now => Ok(false),
            Some((None, _, version, data)) if (version, &data) == (written.0, &written.1) => {
                Ok(true)
            }
            Some(_) => Err(Error::LockLost),
        }
    }
}

/// Where a row is, for messages about it: the table and the masked id, formatted only when a
/// message is made.
struct RowOf<'a> {
    table: &'a (dyn fmt::Display + Sync),
    id: &'a str,
}

impl fmt::Display for RowOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table \"{}\", session {}",
            self.table,
            store::masked(self.id)
        )
    }
}

impl<DB: SqlDatabase, S: Serializer> SqlBackend<DB, S> {
    /// Whether `value` can be one of this backend's ids, checked before a read costs a
    /// statement. Without a custom id generator: what the default generator makes, 16 to
    /// [`MAX_ID_LEN`] characters of URL-safe base64. With one: any id the backend can store
    /// (1 to [`MAX_ID_LEN`] visible ASCII characters), since its format is the generator's.
    fn plausible(&self, value: &str) -> bool {
        if self.ids.is_some() {
            storable(value)
        } else {
            value.len() <= MAX_ID_LEN && store::in_generated_format(value)
        }
    }

    /// Whether a live row is stored under `id`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the database fails.
    pub async fn exists(&self, id: &str) -> Result<bool, Error> {
        if !storable(id) {
            return Ok(false);
        }
        let shared = &*self.shared;
        let now = self.shared.now_ms();
        match run!(shared, |conn| DB::fetch_exists(
            conn,
            &shared.sql.exists,
            id,
            Some(now)
        )) {
            Ok(found) => Ok(found),
            Err(e) => Err(shared.error(e, "exists", Some(id)).await),
        }
    }

    /// `INSERT` `data` under a fresh id (minted again on a taken one).
    async fn insert_row(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        let user = user_of(data)?;
        let value = self.serializer.serialize(data)?;
        let shared = &*self.shared;
        let value = &value;
        store::create(
            DB::LABEL,
            || self.generate(),
            |id| async move {
                if !storable(&id) {
                    return Err(Error::Config(format!(
                        "{}: the id generator made an id this backend cannot store: \
                         ids are 1 to {MAX_ID_LEN} visible ASCII characters",
                        DB::LABEL
                    )));
                }
                let now = self.shared.now_ms();
                let expires_at = self.expires_at(ttl, now);
                match run!(shared, |conn| DB::insert(
                    conn,
                    &shared.sql.insert,
                    &id,
                    value,
                    expires_at,
                    user,
                    unix_secs(data.last_access_unix())
                )) {
                    Ok(inserted) => Ok(inserted),
                    Err(e) => Err(shared.error(e, "create", Some(&id)).await),
                }
            },
        )
        .await
    }

    /// With a per-user limit, delete `user`'s least recently used sessions beyond it, `keep`
    /// (the session just bound) aside: one statement.
    async fn cap(&self, user: &str, keep: &str) -> Result<(), Error> {
        let max = self.shared.max_per_user.load(Ordering::Relaxed);
        if max == 0 {
            return Ok(());
        }
        let shared = &*self.shared;
        let now = shared.now_ms();
        let kept = i64::try_from(max - 1).unwrap_or(i64::MAX);
        match run!(shared, |conn| DB::delete_over_limit(
            conn,
            &shared.sql.over_limit,
            user,
            keep,
            now,
            kept
        )) {
            Ok(_) => Ok(()),
            Err(e) => Err(shared
                .error(e, "end the sessions over the user's limit", None)
                .await),
        }
    }

    /// The live row of `id` as [`Lookup`]: a session, an end marker, or nothing.
    async fn fetch(&self, id: &str) -> Result<Lookup, Error> {
        if !self.plausible(id) {
            return Ok(Lookup::Missing);
        }
        let shared = &*self.shared;
        let now = self.shared.now_ms();
        let location = RowOf {
            table: &shared.table,
            id,
        };
        let decode = |bytes: &[u8], version: i64| {
            if version < 0 {
                return Ok(None);
            }
            store::decode(&self.serializer, bytes, self.corrupt, &location)
                .map(|decoded| Some((decoded, version)))
        };
        let decoded = match run!(shared, |conn| DB::fetch_data(
            conn,
            &shared.sql.read,
            id,
            now,
            &decode
        )) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return Ok(Lookup::Missing),
            Err(e) => return Err(shared.error(e, "read", Some(id)).await),
        };
        match decoded? {
            None => Ok(Lookup::Ended),
            Some((Decoded::Record(data), version)) => {
                Ok(Lookup::Live(data.with_revision(Revision::number(version))))
            }
            Some((Decoded::Corrupt, _)) => {
                // Deleted, so the next request with this cookie does not decode it again.
                self.delete_row(id).await;
                Ok(Lookup::Missing)
            }
        }
    }

    /// Delete a row with no end marker (one that does not decode, or a moved session whose
    /// move was undone: nothing ended); a failure is logged.
    async fn delete_row(&self, id: &str) {
        let shared = &*self.shared;
        if let Err(e) = run!(shared, |conn| DB::delete(conn, &shared.sql.delete, id)) {
            let error = shared.error(e, "remove", Some(id)).await;
            tracing::warn!(%error, "sessionkit-sql: the undecodable row could not be deleted");
        }
    }

    /// Replace the row stored under `id` with `data` as it is (one `UPDATE`), outside the
    /// session layer's merging saves: for tools and tests.
    ///
    /// # Errors
    ///
    /// [`Error::SessionGone`] when no live row is stored under `id` (nothing is stored then);
    /// [`Error::Backend`] when the database fails.
    pub async fn update(
        &self,
        id: &str,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let user = user_of(data)?;
        let value = self.serializer.serialize(data)?;
        let shared = &*self.shared;
        if !storable(id) {
            return Err(Error::SessionGone);
        }
        let now = self.shared.now_ms();
        let expires_at = self.expires_at(ttl, now);
        let accessed = unix_secs(data.last_access_unix());
        match run!(shared, |conn| DB::update(
            conn,
            &shared.sql.update,
            id,
            &value,
            expires_at,
            user,
            accessed,
            now
        )) {
            Ok(0) => Err(Error::SessionGone),
            Ok(_) => Ok(id.to_owned()),
            Err(e) => Err(shared.error(e, "update", Some(id)).await),
        }
    }
}

#[async_trait]
impl<DB: SqlDatabase, S: Serializer> SessionBackend for SqlBackend<DB, S> {
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        Ok(match self.fetch(id).await? {
            Lookup::Live(data) => Some(data),
            _ => None,
        })
    }

    /// The row, or the end marker a removal or an emptying save left for
    /// [`ENDED_GRACE`]: one `SELECT`, like `read`.
    async fn lookup(&self, id: &str) -> Result<Lookup, Error> {
        self.fetch(id).await
    }

    /// `INSERT` under a fresh id (minted again on a taken one); the user goes into
    /// `user_id` in the same statement. With a per-user limit, a bound session costs one
    /// `DELETE` more, of the user's sessions beyond it.
    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        let id = self.insert_row(data, ttl).await?;
        if let Some(user) = data.user() {
            self.cap(user, &id).await?;
        }
        Ok(id)
    }

    /// Two statements when no other save came in between (the session's read, and a
    /// conditional update): the update applies only while the row holds the version the
    /// session read. The update stores the session's user in `user_id` too, so a save that
    /// binds or unbinds one costs no statement more. When another save came in between, the row is read again, the changes
    /// applied to it, and the update sent once more.
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        self.save(id, session, changes, ttl, None).await
    }

    /// Locks are kept in the sessions table: see [Locked routes](crate#locked-routes).
    fn check_locking(&self) -> Result<(), Error> {
        Ok(())
    }

    /// One `UPDATE`, which takes the lock when it is free, its lease ran out, or `token`
    /// holds it already. When it matches no row, one `SELECT` more tells a lock held by
    /// another token (`false`) from an id under which no row is stored (`true`).
    async fn try_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        if !self.plausible(id) {
            // No row is stored under it: nothing to guard (see below).
            return Ok(true);
        }
        if !lock_token_fits(token) {
            return Err(Error::backend(format!(
                "{}: a lock token must be 1 to {MAX_TOKEN_LEN} visible ASCII characters",
                DB::LABEL
            )));
        }
        self.lock_row(&self.shared.sql.locks.lock, "lock", id, token, lease)
            .await
    }

    /// One `UPDATE` of the lease, where `token` holds the lock and its lease has not run
    /// out. When it matches no row, one `SELECT` more tells a lock lost (`false`) from a row
    /// gone meanwhile (`true`: nothing to guard; the step that follows finds it gone).
    async fn renew_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        if !self.plausible(id) {
            // No row is stored under it: nothing to guard (see `try_lock`).
            return Ok(true);
        }
        if !lock_token_fits(token) {
            // No lock can have been taken with it.
            return Ok(false);
        }
        self.lock_row(&self.shared.sql.locks.renew, "renew lock", id, token, lease)
            .await
    }

    /// One `UPDATE`, clearing the lock's columns if `token` still holds it.
    async fn unlock(&self, id: &str, token: &str) -> Result<(), Error> {
        if !self.plausible(id) || !lock_token_fits(token) {
            // No lock was taken on it (see `try_lock`).
            return Ok(());
        }
        let shared = &*self.shared;
        match run!(shared, |conn| DB::unlock(
            conn,
            &shared.sql.locks.unlock,
            id,
            token
        )) {
            Ok(_) => Ok(()),
            Err(e) => Err(shared.error(e, "unlock", Some(id)).await),
        }
    }

    /// The save's `UPDATE` with the lock in its condition (`lock_token = ?token AND
    /// lock_until > ?now`), giving the lock back in the same statement: no statement more than
    /// an unlocked save. When it matches no row, one `SELECT` of the row's lock tells a lost
    /// lock ([`Error::LockLost`], nothing stored) or a gone row ([`Error::SessionGone`]) from
    /// a save of an unlocked route in between, after which the row is read again and the
    /// locked update sent again, as [`apply`](SessionBackend::apply) does.
    async fn apply_locked(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<Option<String>, Error> {
        if !lock_token_fits(token) {
            // It cannot have taken a lock.
            return Err(Error::LockLost);
        }
        self.save(id, session, changes, ttl, Some(token)).await
    }

    /// The new row (`INSERT`), the old one ended (the emptying save), then, for a login
    /// binding the session under a per-user limit, the `DELETE` of the sessions beyond it.
    /// The new row is bound before the old one ends, so a revocation racing the move sees one
    /// of them and ends the session either way.
    async fn move_session(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let new_id = self.insert_row(&session.without_revision(), ttl).await?;
        let (emptied, clear) = store::emptying(session);
        match self.apply(id, &emptied, &clear, ttl).await {
            Ok(_) => {}
            Err(error) => {
                self.delete_row(&new_id).await;
                return Err(error);
            }
        }
        // Only a move that binds the session (a login) adds to the user's count; the new row
        // of a bound session moving stands in for the old one.
        if let Some(user) = changes.binds_user() {
            self.cap(user, &new_id).await?;
        }
        Ok(new_id)
    }

    fn limit_sessions_per_user(&mut self, max: usize) -> Result<(), Error> {
        self.shared
            .max_per_user
            .store(max.max(1), Ordering::Relaxed);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), Error> {
        if !storable(id) {
            return Ok(());
        }
        // The live row becomes the end marker for ENDED_GRACE; nothing is written for an id
        // that holds no live row.
        let shared = &*self.shared;
        let now = self.shared.now_ms();
        let until = Some(now.saturating_add(grace_ms()));
        match run!(shared, |conn| DB::update(
            conn,
            &shared.sql.end,
            id,
            ENDED_DATA,
            until,
            None,
            0,
            now
        )) {
            Ok(_) => Ok(()),
            Err(e) => Err(shared.error(e, "remove", Some(id)).await),
        }
    }

    /// One statement: `SELECT id FROM t WHERE user_id = ? AND <live>`, on the index of
    /// `user_id`.
    async fn user_session_ids(&self, user: &str) -> Result<Vec<String>, Error> {
        if user.len() > MAX_USER_LEN {
            // No row can hold it (see `user_of`).
            return Ok(Vec::new());
        }
        let shared = &*self.shared;
        let now = self.shared.now_ms();
        match run!(shared, |conn| DB::fetch_user_ids(
            conn,
            &shared.sql.user_ids,
            user,
            now
        )) {
            Ok(ids) => Ok(ids),
            Err(e) => Err(shared.error(e, "list the sessions of a user", None).await),
        }
    }

    /// One statement: `SELECT id, data, version FROM t WHERE user_id = ? AND <live>`. Each
    /// row is decoded as [`read`](SessionBackend::read) decodes it: a row that does not
    /// decode is left out and deleted (or, with [`CorruptRecords::Fail`], fails the listing),
    /// and one whose record is bound to someone else (edited by hand, or saved by an earlier
    /// version of this crate that left `user_id` as it was) is left out.
    async fn user_sessions(&self, user: &str) -> Result<Vec<UserSession>, Error> {
        if user.len() > MAX_USER_LEN {
            return Ok(Vec::new());
        }
        let shared = &*self.shared;
        let now = self.shared.now_ms();
        let table: &(dyn fmt::Display + Sync) = &shared.table;
        let decode = |id: &str, bytes: &[u8], version: i64| {
            let location = RowOf { table, id };
            let decoded = store::decode(&self.serializer, bytes, self.corrupt, &location);
            (id.to_owned(), decoded, version)
        };
        let rows = match run!(shared, |conn| DB::fetch_user_rows(
            conn,
            &shared.sql.user_sessions,
            user,
            now,
            &decode
        )) {
            Ok(rows) => rows,
            Err(e) => return Err(shared.error(e, "list the sessions of a user", None).await),
        };
        let mut sessions = Vec::with_capacity(rows.len());
        for (id, decoded, version) in rows {
            match decoded? {
                Decoded::Record(record) if record.user() == Some(user) => {
                    let record = record.with_revision(Revision::number(version));
                    sessions.push(UserSession::new(&id, record));
                }
                Decoded::Record(_) => {}
                // As a read of it would: deleted, so it is not decoded again.
                Decoded::Corrupt => self.delete_row(&id).await,
            }
        }
        UserSession::most_recent_first(&mut sessions);
        Ok(sessions)
    }

    /// `DELETE FROM t WHERE user_id = ? AND id <> ?keep AND <live>` (without `id <> ?` when
    /// nothing is kept), then the user's ids ([`user_session_ids`](SessionBackend::user_session_ids))
    /// to see none is left: two statements. A session moving to a new id while the `DELETE`
    /// runs can escape it (PostgreSQL's statement does not see a row committed after it
    /// started, and skips the old row the move ended meanwhile); its new row, committed before
    /// the old one ended, is in the listing, and the `DELETE` runs again, until a listing finds
    /// none (for up to 5 seconds). Expired rows are left to the cleanup and not counted.
    async fn revoke_user_sessions(&self, user: &str, keep: Option<&str>) -> Result<usize, Error> {
        if user.len() > MAX_USER_LEN {
            return Ok(0);
        }
        // An id the table cannot hold names no row: nothing to keep.
        let keep = keep.filter(|id| storable(id));
        let shared = &*self.shared;
        let sql = match keep {
            Some(_) => &shared.sql.revoke_user_except,
            None => &shared.sql.revoke_user,
        };
        let mut revoked = 0usize;
        let mut contention = Contention::default();
        while contention.try_again() {
            let now = self.shared.now_ms();
            match run!(shared, |conn| DB::delete_of_user(
                conn, sql, user, keep, now
            )) {
                Ok(count) => {
                    revoked = revoked.saturating_add(usize::try_from(count).unwrap_or(usize::MAX));
                }
                Err(e) => return Err(shared.error(e, "revoke the sessions of a user", None).await),
            }
            let left = self.user_session_ids(user).await?;
            if left.iter().all(|id| Some(id.as_str()) == keep) {
                return Ok(revoked);
            }
        }
        Err(Error::backend(format!(
            "{}: sessions of a user kept moving to new ids for {} revocations in a row; gave up",
            DB::LABEL,
            contention.tries()
        )))
    }

    /// Two statements: the user's ids ([`user_session_ids`](SessionBackend::user_session_ids)),
    /// among which the device id's is found, then
    /// `DELETE FROM t WHERE user_id = ? AND id = ? AND <live>`.
    async fn revoke_user_session(&self, user: &str, device: &DeviceId) -> Result<bool, Error> {
        let ids = self.user_session_ids(user).await?;
        let Some(id) = ids.iter().find(|id| device.is_of(id)) else {
            return Ok(false);
        };
        let shared = &*self.shared;
        let now = self.shared.now_ms();
        match run!(shared, |conn| DB::delete_of_user(
            conn,
            &shared.sql.revoke_user_session,
            user,
            Some(id),
            now
        )) {
            Ok(revoked) => Ok(revoked > 0),
            Err(e) => Err(shared
                .error(e, "revoke a session of a user", Some(id))
                .await),
        }
    }

    fn generate_id(&self) -> String {
        self.generate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "sqlite")]
    fn config_message<T: fmt::Debug>(result: Result<T, Error>) -> String {
        match result {
            Err(Error::Config(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn the_builder_reports_its_first_problem_at_build() {
        // Outside a runtime the URL cannot be used: that error, not the later table's.
        let outside = SqliteBackend::builder_from_url("sqlite::memory:")
            .with_table("no such; name")
            .with_expire(Duration::from_secs(60))
            .build();
        assert!(config_message(outside).contains("tokio runtime"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let bad_table = SqliteBackend::builder_from_url("sqlite::memory:")
                .with_table("no such; name")
                .with_expire(Duration::from_secs(60))
                .build();
            assert!(config_message(bad_table).contains("table name"));
            let backend = SqliteBackend::builder_from_url("sqlite::memory:")
                .with_table("app.sessions")
                .with_expire(Duration::from_secs(60))
                .with_max_connections(3)
                .with_serializer(Arc::new(JsonSerializer) as Arc<dyn Serializer>)
                .build()
                .unwrap();
            assert_eq!(backend.table(), "app.sessions");
            assert_eq!(backend.expire(), Some(Duration::from_secs(60)));
            assert_eq!(backend.max_connections(), 3);
        });
    }

    #[test]
    fn only_visible_ascii_ids_up_to_128_bytes_are_storable() {
        assert!(storable(&sessionkit_core::generate_id()));
        assert!(storable(&"x".repeat(MAX_ID_LEN)));
        for id in ["", " ", "a b", "\0", "ü", "🔑", "a\r\nb", "\t"] {
            assert!(!storable(id), "{id:?}");
        }
        assert!(!storable(&"x".repeat(MAX_ID_LEN + 1)));
        // Every ASCII byte, in a block and in the tail, agrees with `is_ascii_graphic`.
        for b in 0..=127u8 {
            for at in [0, 20, 40] {
                let mut id = vec![b'x'; 41];
                id[at] = b;
                let id = String::from_utf8(id).unwrap();
                assert_eq!(storable(&id), b.is_ascii_graphic(), "byte {b:#04x} at {at}");
            }
        }
    }

    /// The locked saves are the saves with the lock's columns cleared and its check added,
    /// bound after the save's own arguments.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    #[test]
    fn locked_saves_are_the_saves_fenced_by_the_lock() {
        let table = TableName::parse(DEFAULT_TABLE).unwrap();
        let mut all = Vec::new();
        #[cfg(feature = "sqlite")]
        all.push((<sqlx::Sqlite as Driver>::statements(&table), ["?8", "?9"]));
        #[cfg(feature = "postgres")]
        all.push((<sqlx::Postgres as Driver>::statements(&table), ["$8", "$9"]));
        #[cfg(feature = "mysql")]
        all.push((<sqlx::MySql as Driver>::statements(&table), ["?", "?"]));
        for (sql, [token, now]) in all {
            for (plain, locked) in [
                (&sql.apply, &sql.locks.apply),
                (&sql.end_version, &sql.locks.end_version),
            ] {
                let (set, condition) = plain.split_once(" WHERE ").unwrap();
                assert_eq!(
                    *locked,
                    format!(
                        "{set}, lock_token = NULL, lock_until = NULL WHERE {condition} \
                         AND lock_token = {token} AND lock_until > {now}"
                    )
                );
                assert_eq!(locked.matches(" WHERE ").count(), 1, "{locked}");
            }
        }
    }

    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    #[test]
    fn the_documented_ddl_is_the_ddl_migrate_runs() {
        let docs = include_str!("lib.rs");
        let table = TableName::parse(DEFAULT_TABLE).unwrap();
        let mut ddl = Vec::new();
        #[cfg(feature = "sqlite")]
        ddl.extend(<sqlx::Sqlite as Driver>::ddl(&table));
        #[cfg(feature = "postgres")]
        ddl.extend(<sqlx::Postgres as Driver>::ddl(&table));
        #[cfg(feature = "mysql")]
        ddl.extend(<sqlx::MySql as Driver>::ddl(&table));
        for statement in ddl {
            assert!(
                docs.contains(&format!("//! {statement};\n")),
                "the crate docs do not show: {statement}"
            );
        }
    }
}
