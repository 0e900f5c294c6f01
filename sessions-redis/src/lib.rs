//! A Redis session backend for sessionkit, on
//! [deadpool-redis](https://docs.rs/deadpool-redis).
//!
//! [`RedisBackend`] stores each session as one Redis string under `<prefix><id>` (prefix
//! `session:` unless told otherwise), encoded by a [`Serializer`]: JSON by default, so other
//! languages can read it, or `BincodeSerializer` with the `bincode` feature.
//!
//! ```no_run
//! use sessionkit_core::{SessionBackend, SessionData};
//! use sessionkit_redis::RedisBackend;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), sessionkit_core::Error> {
//! let backend = RedisBackend::from_url("redis://127.0.0.1:6379")?
//!     .with_prefix("myapp:session:")
//!     .with_expire(Duration::from_secs(24 * 3600)) // for writes that bring no TTL
//!     .with_pool_timeout(Duration::from_secs(2));
//!
//! let id = backend.create(&SessionData::new(Default::default()), None).await?;
//! assert!(backend.exists(&id).await?);
//! # Ok(()) }
//! ```
//!
//! With the middleware from `sessionkit-tower`:
//!
//! ```
//! # use sessionkit_redis::RedisBackend;
//! # let redis_url = "redis://127.0.0.1:6379";
//! // Nothing connects before the first request that needs Redis.
//! let layer = sessionkit_tower::SessionLayer::new(RedisBackend::from_url(redis_url)?);
//! # Ok::<(), sessionkit_core::Error>(())
//! ```
//!
//! # One round trip per operation
//!
//! | operation | command |
//! |---|---|
//! | read | `GET key` |
//! | create | `SET key value NX PX ms` — on a taken id (nil reply), a new id is minted and tried |
//! | [`update`](RedisBackend::update) (a direct overwrite, for tools) | `EVALSHA` of the save's script, storing the value unless the key holds nothing or an end marker ([`Error::SessionGone`], nothing stored) |
//! | save (`apply`: a loaded session's changes, and refreshes) | `EVALSHA` of a script that compares the stored bytes with the ones the session read and, when they match, runs `SET key value PX ms` (for a session emptied, `SET key <end marker> PX 60000`); when another save came in between it answers the stored bytes, the changes are applied to them and the script runs again, with a short pause after the first few tries, for up to 5 seconds. The scripts run through `redis::Script`: when Redis does not know one (`NOSCRIPT`: a new or restarted server), `SCRIPT LOAD` and `EVALSHA` again |
//! | remove (a logout) | `EVALSHA` of a script that makes the key the end marker (`PX 60000`): for a minute the key tells a request that overlapped the logout from one with a long-dead cookie ([`Lookup::Ended`]); for a session bound to a user, one `ZREM` more takes it out of the user's index |
//! | [`exists`](RedisBackend::exists) | `GET key` |
//! | [`lookup`](SessionBackend::lookup) (how the session layer loads) | `GET key` |
//! | a save or create that binds the session to a user | the above, then one `EVALSHA` adding the id to the user's index, whose TTL it extends to the session's (never shortened) |
//! | a later save of a bound session | the save's `EVALSHA`, and one more `EVALSHA` sent alongside (no added wait) that moves the session's index entry to its last use and extends the index (`PEXPIRE … GT`), so the index lives as long as the user's longest-lived session |
//! | a locked route's lock (`SessionLayer::lock`) | `EVALSHA` of a script that sets `{key}:lock` to the request's token with `PX lease` unless another token holds it: the lock's key has the session's key as its hash tag, so in a cluster both share a slot (a prefix or custom ids with braces would break that: keep braces out of both) |
//! | a locked route's save | the save's `EVALSHA` with the lock's key too: nothing is stored unless the lock holds the request's token ([`Error::LockLost`]), and the lock is deleted in the same script |
//! | a locked request that saves nothing | `EVALSHA` of a script deleting the lock if it holds the request's token |
//! | a locked request's login or `delete()` | first an `EVALSHA` of a script renewing the lock's lease (`PEXPIRE`) if it holds the request's token: the move or removal runs only then |
//!
//! Creates never overwrite a record and updates never bring back one that was removed or has
//! expired: both are decided by Redis in the same command that stores the data.
//!
//! Connections from the `redis` crate are multiplexed: one connection carries any number of
//! concurrent commands, pipelined. The backend checks out one connection from its pool, keeps
//! it and shares it between all operations, because each checkout from a deadpool-redis pool
//! sends a `PING` round trip of its own to vet the connection. The pool is visited again only
//! when that connection fails (Redis restarted, the socket dropped); the command that found it
//! dead is then sent once more on a fresh connection, so a Redis restart between two requests
//! costs no failed request. Every command above is safe to repeat. (In the rare case where a
//! create was stored but its reply was lost, the repeat sees the id taken and stores the
//! session under a new id; the first copy is left to its TTL.)
//!
//! # Sessions of a user ("log out everywhere")
//!
//! A session bound to a user (`Session::set_user`) is also entered in that user's index, a
//! sorted set under [`user_key`](RedisBackend::user_key) (`<prefix>user:{<user>}`) holding
//! the session ids. The session layer's saves write it once, by the save that binds, and by
//! the create of a bound session under a new id (a direct
//! [`update`](RedisBackend::update) of a bound record writes it again). It is written after the record, so an entry never precedes its
//! session; if it cannot be written, the record is deleted again and the save fails, so a
//! bound session does not live on outside the index (should that deletion fail too, the
//! error is logged and the record is left to its TTL). Saves of unbound sessions, and the
//! layer's later saves of bound ones, send nothing more.
//!
//! The index needs no expiry of its own: listing
//! ([`user_sessions`](SessionBackend::user_sessions)) reads each indexed session (`GET`) and
//! prunes, in one script, the entries of sessions that expired, were removed or are bound to
//! someone else now; an entry bound again since it was read stays. Revoking
//! ([`revoke_user_sessions`](SessionBackend::revoke_user_sessions), all or all but the
//! current one, and [`revoke_user_session`](SessionBackend::revoke_user_session) by device id)
//! reads each session and deletes it only as read, with the save's compare-and-swap script
//! (a session rebound in between is left alone), prunes the index, and lists it once more
//! for sessions that moved to a new id meanwhile (a session moves by entering the index
//! under its new id before its old record goes, and the move is undone if the old record was
//! revoked first). A save racing the revocation finds its record gone and stores nothing
//! ([`Error::SessionGone`]); a session that cannot be revoked does not stop the others (the
//! first error is returned after all were tried). Entries of
//! sessions that expire without ever being listed stay until the next listing or revocation
//! of that user (a few dozen bytes each).
//!
//! In a cluster, the braces around the user are a hash tag: a user's index sits in one slot,
//! and each index command touches that one key. Listing and revoking then send one command
//! per session, each to its own key's slot: no command ever spans two slots.
//!
//! # Expiry
//!
//! Every write sets the record's time to live anew (`PX`), so a session lives for its TTL
//! after its last save, as in starsessions.
//!
//! - A write that brings a TTL (the session layer passes its `max_age`) uses that TTL.
//! - A write without one (a browser-session cookie, `max_age` zero) uses the backend's
//!   [`expire`](RedisBackend::with_expire) when one is set, and otherwise stores a record that
//!   never expires. A write without any TTL sends no `PX` at all (and no `KEEPTTL`): the record
//!   has no expiry afterwards, whatever it had before.
//!
//! Set `expire` when the session layer uses browser-session cookies, so abandoned sessions do
//! not stay in Redis forever.
//!
//! # Failures
//!
//! Nothing here panics. Redis unreachable, a refused connection or a pool that gives no
//! connection within [the pool timeout](RedisBackend::with_pool_timeout) is
//! [`Error::Backend`], and its message names the cause:
//! `redis: could not get a connection from the pool: ...`. A command that fails names the
//! command and the key, with most of the session id masked: `redis: GET session:AbC1x-…
//! failed: ...`. The session layer returns these to the handler from `load()`, and answers a
//! failed save with a 500; requests that never touch the session send no command at all.
//!
//! A record the serializer cannot decode (written by another serializer or application, a
//! stored type that changed, a manual edit) reads as no session by default: a `tracing`
//! warning names the masked key and the decode error, the key is deleted, and the client
//! starts a fresh session instead of getting a 500 until the record expires.
//! [`with_corrupt_records(CorruptRecords::Fail)`](RedisBackend::with_corrupt_records) makes
//! such a read fail with [`Error::Serialization`] instead, whose source is a
//! [`CorruptRecord`](sessionkit_core::store::CorruptRecord) naming the key.
//!
//! Redis-level timeouts are the `redis` crate's: 1 s to connect and 500 ms for a reply on
//! pools made by [`from_url`](RedisBackend::from_url). For other connection settings (TLS,
//! RESP3, timeouts) build a pool yourself and pass it to
//! [`from_pool`](RedisBackend::from_pool). The pool's size bounds nothing here: the backend
//! keeps one multiplexed connection of it, which carries every operation at once, and goes
//! back to the pool only to replace that connection when it fails. The backend needs a tokio
//! runtime with timers enabled, as `#[tokio::main]` gives.
//!
//! # Redis Cluster
//!
//! With the `cluster` feature, [`from_cluster_urls`](RedisBackend::from_cluster_urls) and
//! [`from_cluster_pool`](RedisBackend::from_cluster_pool) make the same backend over a cluster
//! pool. Every operation touches one key, so sessions spread over all slots and no hash tags
//! are needed; do not put a hash tag (`{...}`) in the prefix, or every session lands on one
//! node. A user's index is one key with the user as its hash tag (see above).
//!
//! # Sentinel
//!
//! With the `sentinel` feature, [`from_sentinel`](RedisBackend::from_sentinel) (the
//! sentinels' URLs and the master's name) and
//! [`from_sentinel_pool`](RedisBackend::from_sentinel_pool) (a deadpool-redis Sentinel pool
//! and the config it was made from: credentials, TLS, pool size) make the same backend on the
//! master of a group that Redis Sentinel watches. Everything above works through it
//! unchanged, the user index included: the master holds every key, as a single node does.
//!
//! ```no_run
//! # #[cfg(feature = "sentinel")] {
//! use sessionkit_redis::RedisBackend;
//!
//! let backend = RedisBackend::from_sentinel(
//!     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
//!     "mymaster",
//! )?;
//! let layer = sessionkit_tower::SessionLayer::new(backend);
//! # }
//! # Ok::<(), sessionkit_core::Error>(())
//! ```
//!
//! The kept connection follows the master:
//!
//! - a task subscribed to every sentinel's `+switch-master` channel (started with the first
//!   operation, stopped when the backend is dropped; a subscription that stays quiet is
//!   pinged, and one that ends or stops answering is made again) retires the connection as
//!   soon as a sentinel announces a new master, and the next operation connects to the
//!   master the sentinels name then. Each sentinel announces the switch when it learns of
//!   it, so a connection made through a sentinel that still named the old master is
//!   retired again at the next announcement. This matters after a failover that leaves the
//!   old master up (`SENTINEL FAILOVER`, a network partition): it takes writes for about ten
//!   seconds more, until the sentinels turn it into a replica, and those writes are lost.
//!   With the connection, the pool's idle connections are closed: a pool shared with the
//!   application would hand them out again (deadpool vets them with a `PING` alone);
//! - a dropped connection (the master crashed, or the sentinels closed its clients) and a
//!   `READONLY` reply (the server is a replica now) replace the connection too; an operation
//!   that met them on the connection already in use is sent once more on the new one,
//!   through the sentinels. Redis's `NOSCRIPT` on the new master makes the scripts load
//!   again. (Redis 7 answers a script's write on a replica with `READONLY`; older versions
//!   wrap it in a script error, and there the announcement and the dropped connection move
//!   the backend.)
//!
//! While no master can be reached, operations fail with [`Error::Backend`] and the session
//! layer answers the usual empty 500; operations succeed again, with no restart, once the
//! sentinels name a master that answers. Measured on loopback (the crate's Sentinel test:
//! one master, one replica, three sentinels, `down-after-milliseconds 1000`, a request
//! every 20 ms): a forced failover failed no request, and the first write after the
//! sentinels switched landed on the new master (through the backend's own pool, a pool of
//! one connection, and a pool shared with the application); a master crash failed
//! requests for 2.2 s (about `down-after-milliseconds` plus the election), after which
//! every request succeeded.
//!
//! What a failover can lose: replication is asynchronous, so the writes the old master
//! acknowledged but had not yet sent to the replica it lost, and the writes it took between
//! the promotion of the replica and the sentinels' announcement (under a second measured
//! here). A lost write is a save undone: a login or a logout that did not happen, a value
//! back to its former state. Redis's `WAIT` makes a write wait for replicas' acknowledgement,
//! but it is not offered here: it costs a round trip more on every save, it does not make
//! Redis consistent (a failover can still elect a replica that missed the write), and in
//! the test above no acknowledged increment was lost without it. To bound the window on the
//! server side instead, give the master `min-replicas-to-write 1` and `min-replicas-max-lag`
//! (it then refuses writes, a clear [`Error::Backend`], when its replicas fall behind or go
//! away), and keep `down-after-milliseconds` as short as the network allows.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `bincode` | off | `sessionkit_core::serializer::BincodeSerializer`, a compact binary record format |
//! | `cluster` | off | Redis Cluster support (`deadpool-redis/cluster`) |
//! | `sentinel` | off | Redis Sentinel support (`deadpool-redis/sentinel`): the master of a watched group, followed through failovers |
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connection;
#[cfg(feature = "sentinel")]
mod sentinel;

use connection::{Connector, Failure, Pool};
use deadpool_redis::redis::{Cmd, RedisWrite, ScriptInvocation, ToRedisArgs, Value};
use sessionkit_core::serializer::JsonSerializer;
use sessionkit_core::store::{self, Contention, Decoded, Turns};
use sessionkit_core::{
    Changes, DeviceId, ENDED_GRACE, Error, IdGenerator, Lookup, Revision, Serializer,
    SessionBackend, SessionData, UserSession, async_trait,
};

/// How a read treats a record the serializer cannot decode (re-exported from `sessionkit-core`).
pub use sessionkit_core::store::CorruptRecords;
use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use deadpool_redis;

/// The key prefix used unless [`with_prefix`](RedisBackend::with_prefix) sets another.
pub const DEFAULT_PREFIX: &str = "session:";

/// How long an operation waits for a connection from the pool (connecting included) unless
/// [`with_pool_timeout`](RedisBackend::with_pool_timeout) sets another.
pub const DEFAULT_POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `PX` sent: Redis rejects expiry times that overflow its clock.
const MAX_TTL_MS: u128 = 1 << 60;

/// A session's last use (Unix seconds) as an index score: milliseconds, the unit the
/// scores had when they were the time of binding.
fn used_ms(used: u64) -> u64 {
    used.saturating_mul(1000)
}

/// A TTL as a script argument: milliseconds, or empty for none.
fn ttl_arg(ttl_ms: Option<u64>) -> String {
    ttl_ms.map(|ms| ms.to_string()).unwrap_or_default()
}

/// How many sessions' `GET`s a listing sends at once.
const LIST_BATCH: usize = 256;

/// [`ENDED_GRACE`] in milliseconds, the life of an end marker.
fn grace_ms() -> u64 {
    u64::try_from(ENDED_GRACE.as_millis()).unwrap_or(u64::MAX)
}

/// How many listings of a user's index a revocation makes at most, looking for sessions that
/// moved to a new id while it ran.
const REVOKE_ROUNDS: usize = 4;

/// What a key holds for [`ENDED_GRACE`] after its session ended (a logout, a login that moved
/// it, a save that emptied it, a revocation): bytes no serializer writes (JSON starts with
/// `{`, bincode with its format byte). It reads as no session; `lookup` answers
/// [`Lookup::Ended`] for it.
const ENDED_MARKER: &[u8] = b"\0sessionkit:ended";

/// The save: a compare-and-swap on the record's bytes. `KEYS[1]` the session's key,
/// `ARGV[1]` the bytes the changes were applied to, `ARGV[2]` what to do: `set` the new
/// bytes `ARGV[3]` for `ARGV[4]` milliseconds (empty: no TTL), `put` them without comparing
/// (a direct overwrite), `end` the session (its end marker for `ARGV[4]` milliseconds) or
/// `del` it (a revocation: no marker, its next request has its cookie expired); `ARGV[5]` the
/// end marker. On a locked route, `KEYS[2]` the session's lock (in the session key's slot)
/// and `ARGV[6]` the request's token: nothing is stored unless the lock holds that token, and
/// a save that stores gives the lock back (a save sent again after its reply was lost finds
/// its own bytes stored and the lock gone: it answers 1, as the first time). Replies: nil when the record is gone or ended (it
/// is not brought back), 1 when set, 0 when ended or deleted, -1 when the lock is not the
/// request's, and an array holding the current bytes when they are not the expected ones
/// (another save came in between).
static APPLY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[6] then
    if ARGV[2] == 'set' and current == ARGV[3] then return 1 end
    return -1
end
if not current or current == ARGV[5] then return nil end
if ARGV[2] ~= 'put' and current ~= ARGV[1] then return {current} end
if KEYS[2] then redis.call('DEL', KEYS[2]) end
if ARGV[2] == 'del' then
    redis.call('DEL', KEYS[1])
    return 0
end
if ARGV[4] == '' then
    redis.call('SET', KEYS[1], ARGV[3])
else
    redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
if ARGV[2] == 'end' then return 0 end
return 1
",
    )
});

/// A lock taken: `KEYS[1]` the lock, `ARGV[1]` the token, `ARGV[2]` the lease in
/// milliseconds. Taken when free, renewed (a new lease) when the token holds it already (a
/// check before a login moves the session, or a command sent again after its reply was
/// lost); 0 when another token holds it.
static LOCK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// A lock renewed: `KEYS[1]` the lock gets a new lease of `ARGV[2]` milliseconds if it holds
/// the token `ARGV[1]`; 0 otherwise.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
",
    )
});

/// A lock given back: `KEYS[1]` the lock is deleted if it holds the token `ARGV[1]`.
static UNLOCK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// A removal: `KEYS[1]` the session's key becomes the end marker `ARGV[1]` for `ARGV[2]`
/// milliseconds. Replies the bytes it held (so a bound session's index entry can go), or nil
/// when it held no session.
static END: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local old = redis.call('GET', KEYS[1])
if not old or old == ARGV[1] then return nil end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return old
",
    )
});

/// What the save script does once the record is as expected.
enum SaveWrite<'a> {
    /// Store these bytes, for the TTL.
    Set(&'a [u8], Option<u64>),
    /// Store these bytes, for the TTL, whatever the record holds (a direct overwrite).
    Put(&'a [u8], Option<u64>),
    /// End the session: its end marker, for [`ENDED_GRACE`].
    End,
    /// Delete the record, leaving no marker (a revocation).
    Delete,
}

/// What [`INDEX`] and [`SWAP`] share. `lives(key, ttl, existed)`: the index lives at least
/// `ttl` milliseconds more (empty: a session without TTL, so it never expires), a new one
/// exactly that long. `over(key, keep, max)`, the per-user limit: takes the entries beyond
/// `max` with the lowest scores (the least recently used sessions), `keep` aside, out of the
/// index and returns them.
const OVER: &str = r"
local function lives(key, ttl, existed)
    if ttl == '' then
        redis.call('PERSIST', key)
    elseif existed == 0 then
        redis.call('PEXPIRE', key, ttl)
    else
        redis.call('PEXPIRE', key, ttl, 'GT')
    end
end
local function over(key, keep, max)
    local taken = {}
    if max == nil or max < 1 then return taken end
    local extra = redis.call('ZCARD', key) - max
    if extra < 1 then return taken end
    for _, id in ipairs(redis.call('ZRANGE', key, 0, extra)) do
        if #taken < extra and id ~= keep then
            redis.call('ZREM', key, id)
            table.insert(taken, id)
        end
    end
    return taken
end
";

/// A session enters its user's index: `KEYS[1]` the index (a sorted set), `ARGV[1]` the id,
/// `ARGV[2]` the session's last use in milliseconds (its score), `ARGV[3]` the session's TTL in milliseconds (empty: none).
/// The score only ever grows, so a listing that found the record unbound prunes the entry only
/// if no binding came in since (see [`PRUNE`]). The index lives as long as the user's
/// longest-lived session: a new index gets the session's TTL, an existing one is extended to
/// it, never shortened, and one that holds a session without TTL never expires. `ARGV[4]`
/// the most sessions the user keeps (0: no limit): the entries beyond it with the lowest
/// scores (the least recently saved) leave the index, and the reply names them, for their
/// records to be deleted.
static INDEX: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{OVER}{}",
        r"
local existed = redis.call('EXISTS', KEYS[1])
local score = tonumber(ARGV[2])
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if old and tonumber(old) >= score then score = tonumber(old) + 1 end
redis.call('ZADD', KEYS[1], score, ARGV[1])
lives(KEYS[1], ARGV[3], existed)
return over(KEYS[1], ARGV[1], tonumber(ARGV[4]))
"
    ))
});

/// A save of a bound session: `KEYS[1]` the index, `ARGV[1]` the id, `ARGV[2]` its last use in
/// milliseconds, `ARGV[3]` the session's TTL in milliseconds (empty: none). The entry's
/// score moves up to now (the per-user limit ends the least recently saved sessions first),
/// only if the entry is there; the index lives at least as long as the session.
static EXTEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('ZADD', KEYS[1], 'XX', 'GT', ARGV[2], ARGV[1])
if ARGV[3] == '' then
    redis.call('PERSIST', KEYS[1])
else
    redis.call('PEXPIRE', KEYS[1], ARGV[3], 'GT')
end
return 1
",
    )
});

/// Entries leave a user's index: `KEYS[1]` the index, `ARGV` pairs of an id and the score it
/// had when its record was found ended or bound to someone else. An entry whose score moved
/// since (bound again meanwhile) stays. Replies how many went.
static PRUNE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local gone = 0
for i = 1, #ARGV, 2 do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) == tonumber(ARGV[i + 1]) then
        gone = gone + redis.call('ZREM', KEYS[1], ARGV[i])
    end
end
return gone
",
    )
});

/// A bound session moves to a new id in its user's index: `KEYS[1]` the index, `ARGV[1]` the
/// old id, `ARGV[2]` the new one, `ARGV[3]` its last use in milliseconds, `ARGV[4]` `1` when the old
/// id must still be indexed (the session was bound before this request), `ARGV[5]` the
/// session's TTL in milliseconds (empty: none), which the index's is extended to as by
/// [`INDEX`], `ARGV[6]` the per-user limit as for [`INDEX`]. Replies an array: first 0,
/// changing nothing, when the old id must be indexed and is not (a revocation took it: the
/// moved session must not live on), or 1 when the new id took the old one's place; then the
/// ids the limit took out of the index.
static SWAP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{OVER}{}",
        r"
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not had and ARGV[4] == '1' then return {0} end
local existed = redis.call('EXISTS', KEYS[1])
if had then redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[2])
lives(KEYS[1], ARGV[5], existed)
local taken = over(KEYS[1], ARGV[2], tonumber(ARGV[6]))
table.insert(taken, 1, 1)
return taken
"
    ))
});

/// A revocation takes a user's sessions out of the index in one step: `KEYS[1]` the index,
/// `ARGV[1]` the id to keep (empty: none). Replies the ids taken. A session that moves to a
/// new id swaps its entry ([`SWAP`]): before this step it is taken under its new id, after it
/// its move is refused. Either way the revocation ends it.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local taken = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if id ~= ARGV[1] then
        redis.call('ZREM', KEYS[1], id)
        table.insert(taken, id)
    end
end
return taken
",
    )
});

/// What became of one indexed session a revocation looked at.
enum Revoked {
    /// Its record was deleted.
    Ended,
    /// It had ended already, or is bound to someone else now: its entry goes.
    Stale,
}

/// Sessions stored in Redis (or a Redis Cluster). See the [crate docs](crate).
///
/// `S` is the record format, [`JsonSerializer`] unless
/// [`with_serializer`](RedisBackend::with_serializer) sets another: any [`Serializer`], an
/// `Arc<dyn Serializer>` included.
///
/// Cloning is cheap: clones share the pool and the connection.
pub struct RedisBackend<S = JsonSerializer> {
    connector: Arc<Connector>,
    prefix: Arc<str>,
    expire: Option<Duration>,
    serializer: S,
    ids: Option<IdGenerator>,
    corrupt: CorruptRecords,
    /// Where this process's saves of one session take turns when they keep colliding.
    turns: Arc<Turns>,
    /// The most sessions one user keeps (0: no limit), shared by clones.
    max_per_user: Arc<AtomicUsize>,
}

impl<S: Clone> Clone for RedisBackend<S> {
    fn clone(&self) -> Self {
        RedisBackend {
            connector: Arc::clone(&self.connector),
            prefix: Arc::clone(&self.prefix),
            expire: self.expire,
            serializer: self.serializer.clone(),
            ids: self.ids.clone(),
            corrupt: self.corrupt,
            turns: Arc::clone(&self.turns),
            max_per_user: Arc::clone(&self.max_per_user),
        }
    }
}

impl<S> fmt::Debug for RedisBackend<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("redis", &self.connector.pool().kind())
            .field("prefix", &&*self.prefix)
            .field("expire", &self.expire)
            .field("pool_timeout", &self.connector.timeout())
            .field("serializer", &std::any::type_name::<S>())
            .field("corrupt_records", &self.corrupt)
            .finish_non_exhaustive()
    }
}

impl RedisBackend<JsonSerializer> {
    /// A backend on a new pool for the Redis at `url` (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS when deadpool-redis has a TLS feature on, `redis+unix:///path`).
    ///
    /// No connection is made yet: the first operation connects. A URL that cannot be parsed
    /// is [`Error::Config`].
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let pool = deadpool_redis::Config::from_url(url)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| Error::Config(format!("redis: cannot make a pool for this URL: {e}")))?;
        Ok(Self::from_pool(pool))
    }

    /// A backend on an existing deadpool-redis pool, which it may share with the rest of the
    /// application. The backend keeps one connection of that pool checked out (see the
    /// [crate docs](crate#one-round-trip-per-operation)).
    pub fn from_pool(pool: deadpool_redis::Pool) -> Self {
        Self::with_pool(Pool::Single(pool))
    }

    /// A backend on a new pool for the Redis Cluster reached through `urls` (one or more of its
    /// nodes; the rest are discovered).
    ///
    /// No connection is made yet. URLs that cannot be parsed are [`Error::Config`].
    #[cfg(feature = "cluster")]
    pub fn from_cluster_urls<I, U>(urls: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        if urls.is_empty() {
            return Err(Error::Config(
                "redis: a cluster needs at least one node URL".into(),
            ));
        }
        let pool = deadpool_redis::cluster::Config::from_urls(urls)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| {
                Error::Config(format!(
                    "redis: cannot make a cluster pool for these URLs: {e}"
                ))
            })?;
        Ok(Self::from_cluster_pool(pool))
    }

    /// A backend on an existing deadpool-redis cluster pool.
    #[cfg(feature = "cluster")]
    pub fn from_cluster_pool(pool: deadpool_redis::cluster::Pool) -> Self {
        Self::with_pool(Pool::Cluster(pool))
    }

    /// A backend on a new pool for the master of the group that Redis Sentinel monitors as
    /// `master_name`, found through the sentinels at `sentinel_urls`
    /// (`redis://host:26379`, one per sentinel: any one that answers is enough). See
    /// [Sentinel](crate#sentinel) for what follows a failover and what one can lose.
    ///
    /// No connection is made yet. URLs that cannot be parsed are [`Error::Config`].
    ///
    /// ```no_run
    /// use sessionkit_redis::RedisBackend;
    ///
    /// let backend = RedisBackend::from_sentinel(
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///     "mymaster",
    /// )?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    #[cfg(feature = "sentinel")]
    pub fn from_sentinel<I, U>(sentinel_urls: I, master_name: &str) -> Result<Self, Error>
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let urls: Vec<String> = sentinel_urls.into_iter().map(Into::into).collect();
        if urls.is_empty() {
            return Err(Error::Config(
                "redis: Sentinel needs at least one sentinel URL".into(),
            ));
        }
        let config = deadpool_redis::sentinel::Config::from_urls(
            urls,
            master_name.to_owned(),
            deadpool_redis::sentinel::SentinelServerType::Master,
        );
        let pool = config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| {
                Error::Config(format!(
                    "redis: cannot make a Sentinel pool for these URLs: {e}"
                ))
            })?;
        Self::from_sentinel_pool(pool, &config)
    }

    /// A backend on an existing deadpool-redis Sentinel pool, made from `config` for the
    /// master (`SentinelServerType::Master`: the backend writes, and a replica answers every
    /// write with `READONLY`). The backend subscribes to the sentinels that `config` names,
    /// which a pool does not tell. Use it to give the sentinels or the nodes credentials or
    /// TLS (`deadpool_redis::sentinel::Config::with_node_connection_info`), to size the
    /// pool, or to share the pool with the rest of the application.
    ///
    /// No connection is made yet. A sentinel URL in `config` that cannot be parsed, or a
    /// config for replicas, is [`Error::Config`].
    ///
    /// ```no_run
    /// use deadpool_redis::sentinel::{Config, SentinelServerType};
    /// use sessionkit_redis::RedisBackend;
    ///
    /// let config = Config::from_urls(
    ///     vec!["redis://10.0.0.1:26379".to_owned(), "redis://10.0.0.2:26379".to_owned()],
    ///     "mymaster".to_owned(),
    ///     SentinelServerType::Master,
    /// );
    /// let pool = config
    ///     .create_pool(Some(deadpool_redis::Runtime::Tokio1))
    ///     .expect("a valid Sentinel config");
    /// let backend = RedisBackend::from_sentinel_pool(pool, &config)?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    #[cfg(feature = "sentinel")]
    pub fn from_sentinel_pool(
        pool: deadpool_redis::sentinel::Pool,
        config: &deadpool_redis::sentinel::Config,
    ) -> Result<Self, Error> {
        if !matches!(
            config.server_type,
            deadpool_redis::sentinel::SentinelServerType::Master
        ) {
            return Err(Error::Config(
                "redis: a session backend writes: its Sentinel pool must reach the master \
                 (SentinelServerType::Master), not a replica"
                    .into(),
            ));
        }
        let sentinels = sentinel::Sentinels::of(config)?;
        let mut backend = Self::with_pool(Pool::Sentinel(pool));
        backend.connector = Arc::new(
            Connector::new(backend.connector.pool().clone(), DEFAULT_POOL_TIMEOUT)
                .watching(sentinels),
        );
        Ok(backend)
    }

    fn with_pool(pool: Pool) -> Self {
        RedisBackend {
            connector: Arc::new(Connector::new(pool, DEFAULT_POOL_TIMEOUT)),
            prefix: Arc::from(DEFAULT_PREFIX),
            expire: None,
            serializer: JsonSerializer,
            ids: None,
            corrupt: CorruptRecords::default(),
            turns: Arc::default(),
            max_per_user: Arc::default(),
        }
    }
}

impl<S> RedisBackend<S> {
    /// Store records under `<prefix><id>`. The default is [`DEFAULT_PREFIX`] (`session:`).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The TTL for writes that bring none (see [Expiry](crate#expiry)); it restarts on every
    /// write. A write's own TTL, when it has one, wins. Zero turns it off (the default).
    #[must_use]
    pub fn with_expire(mut self, expire: Duration) -> Self {
        self.expire = (!expire.is_zero()).then_some(expire);
        self
    }

    /// Encode records with `serializer` instead.
    pub fn with_serializer<T: Serializer>(self, serializer: T) -> RedisBackend<T> {
        RedisBackend {
            connector: self.connector,
            prefix: self.prefix,
            expire: self.expire,
            serializer,
            ids: self.ids,
            corrupt: self.corrupt,
            turns: self.turns,
            max_per_user: self.max_per_user,
        }
    }

    /// How long an operation may wait for a connection from the pool, connecting included,
    /// before it fails with [`Error::Backend`]. The default is [`DEFAULT_POOL_TIMEOUT`] (5 s).
    ///
    /// Configure before use: the backend (and its clones from now on) checks out a new
    /// connection.
    #[must_use]
    pub fn with_pool_timeout(mut self, timeout: Duration) -> Self {
        self.connector = Arc::new(self.connector.with_timeout(timeout));
        self
    }

    /// Take new ids from `ids` instead of the default generator (192 random bits).
    #[must_use]
    pub fn with_id_generator(mut self, ids: IdGenerator) -> Self {
        self.ids = Some(ids);
        self
    }

    /// What a read does with a record the serializer cannot decode: by default
    /// ([`CorruptRecords::Discard`]) it reads as no session, with a `tracing` warning, and the
    /// key is deleted; [`CorruptRecords::Fail`] fails the read with [`Error::Serialization`]
    /// (see [Failures](crate#failures)).
    #[must_use]
    pub fn with_corrupt_records(mut self, policy: CorruptRecords) -> Self {
        self.corrupt = policy;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The TTL used for writes that bring none.
    pub fn expire(&self) -> Option<Duration> {
        self.expire
    }

    /// The serializer.
    pub fn serializer(&self) -> &S {
        &self.serializer
    }

    /// The Redis key of the session `id`: the prefix followed by the id.
    pub fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The key of the session `id`'s lock (locked routes): `{<prefix><id>}:lock`, whose
    /// hash tag is the session's key, so in a cluster both sit in one slot and the save
    /// checks the lock in the same script.
    pub fn lock_key(&self, id: &str) -> String {
        format!("{{{}{id}}}:lock", self.prefix)
    }

    fn key_arg<'a>(&'a self, id: &'a str) -> Key<'a> {
        Key {
            prefix: &self.prefix,
            id,
        }
    }

    async fn query(&self, cmd: &Cmd, name: &str, id: &str) -> Result<Value, Error> {
        self.connector
            .query(cmd)
            .await
            .map_err(|failure| match failure {
                Failure::Connect(e) => e,
                Failure::Command(e) => Error::backend_with(
                    format!("redis: {name} {} failed: {e}", masked_key(&self.prefix, id)),
                    e,
                ),
            })
    }

    fn unexpected(&self, name: &str, id: &str, reply: &Value) -> Error {
        Error::backend(format!(
            "redis: unexpected reply to {name} {}: {reply:?}",
            masked_key(&self.prefix, id)
        ))
    }

    fn ttl_ms(&self, ttl: Option<Duration>) -> Option<u64> {
        ttl.or(self.expire).map(|ttl| {
            let ms = ttl.as_millis().clamp(1, MAX_TTL_MS);
            u64::try_from(ms).unwrap_or(u64::MAX)
        })
    }

    fn set_cmd(&self, id: &str, value: &[u8], condition: &str, ttl_ms: Option<u64>) -> Cmd {
        let mut cmd = Cmd::with_capacity(6, self.prefix.len() + id.len() + value.len() + 32);
        cmd.arg("SET")
            .arg(self.key_arg(id))
            .arg(value)
            .arg(condition);
        if let Some(ms) = ttl_ms {
            cmd.arg("PX").arg(ms);
        }
        cmd
    }

    /// Send a `SET`; `Ok(false)` when its condition (`NX`/`XX`) was not met.
    async fn set(
        &self,
        id: &str,
        value: &[u8],
        condition: &str,
        ttl_ms: Option<u64>,
    ) -> Result<bool, Error> {
        let cmd = self.set_cmd(id, value, condition, ttl_ms);
        match self.query(&cmd, "SET", id).await? {
            Value::Nil => Ok(false),
            Value::Okay => Ok(true),
            Value::SimpleString(s) if s == "OK" => Ok(true),
            other => Err(self.unexpected("SET", id, &other)),
        }
    }

    /// The save script's invocation: compare with `expected`, then `write`.
    fn apply_invocation(
        &self,
        id: &str,
        expected: &[u8],
        write: SaveWrite<'_>,
    ) -> ScriptInvocation<'static> {
        self.locked_apply_invocation(id, expected, write, None)
    }

    /// [`apply_invocation`](Self::apply_invocation), fenced by the lock `token` holds on a
    /// locked route.
    fn locked_apply_invocation(
        &self,
        id: &str,
        expected: &[u8],
        write: SaveWrite<'_>,
        token: Option<&str>,
    ) -> ScriptInvocation<'static> {
        let mut invocation = APPLY.key(self.key_arg(id));
        if token.is_some() {
            invocation.key(self.lock_key(id));
        }
        invocation.arg(expected);
        let (mode, value, ttl_ms) = match write {
            SaveWrite::Set(value, ttl_ms) => ("set", value, ttl_ms),
            SaveWrite::Put(value, ttl_ms) => ("put", value, ttl_ms),
            SaveWrite::End => ("end", ENDED_MARKER, Some(grace_ms())),
            SaveWrite::Delete => ("del", &[][..], None),
        };
        invocation
            .arg(mode)
            .arg(value)
            .arg(ttl_arg(ttl_ms))
            .arg(ENDED_MARKER);
        if let Some(token) = token {
            invocation.arg(token);
        }
        invocation
    }

    /// Run a script through `redis::Script`: `EVALSHA`, and when this Redis does not know
    /// the script yet (`NOSCRIPT`: a new or restarted server) `SCRIPT LOAD` and `EVALSHA`
    /// again. `id` names the session (or the index's user) in messages.
    async fn script(&self, invocation: &ScriptInvocation<'_>, id: &str) -> Result<Value, Error> {
        match self.connector.invoke(invocation).await {
            Ok(value) => Ok(value),
            Err(Failure::Connect(e)) => Err(e),
            Err(Failure::Command(e)) => Err(Error::backend_with(
                format!(
                    "redis: EVALSHA {} failed: {e}",
                    masked_key(&self.prefix, id)
                ),
                e,
            )),
        }
    }

    /// The key of `user`'s index of sessions: the prefix, `user:`, and the user in braces.
    /// The braces are a hash tag: in a cluster a user's whole index lives in one slot, so each
    /// command on it touches one slot.
    pub fn user_key(&self, user: &str) -> String {
        format!("{}user:{{{user}}}", self.prefix)
    }

    /// Add the session `id` to `user`'s index (one `EVALSHA`).
    async fn index(
        &self,
        user: &str,
        id: &str,
        used: u64,
        ttl_ms: Option<u64>,
    ) -> Result<(), Error> {
        let key = self.user_key(user);
        let mut invocation = INDEX.key(&key);
        invocation
            .arg(id)
            .arg(used_ms(used))
            .arg(ttl_arg(ttl_ms))
            .arg(self.max_per_user.load(Ordering::Relaxed));
        let reply = self.script(&invocation, id).await?;
        let victims: Vec<String> = redis::from_redis_value(reply.clone())
            .map_err(|_| self.unexpected("EVALSHA", id, &reply))?;
        self.end_over_limit(&victims).await;
        Ok(())
    }

    /// Delete the record `id` outright, with no end marker (`DEL`): a record that does not
    /// decode, one this backend wrote and gave up, or one the per-user limit ended. A failure
    /// is logged with `what` the record was; the record then ends with its TTL.
    async fn discard(&self, id: &str, what: &str) {
        if let Err(error) = self.query(&self.key_cmd("DEL", id), "DEL", id).await {
            tracing::warn!(%error, "redis: {what} could not be deleted");
        }
    }

    /// Delete the records of sessions the per-user limit took out of their user's index
    /// (no end marker: their next request starts afresh, its cookie expired). A failure is
    /// logged: the record is out of the index already, and ends with its TTL.
    async fn end_over_limit(&self, victims: &[String]) {
        for id in victims {
            self.discard(id, "a session over its user's limit").await;
        }
    }

    /// A save of `user`'s session `id`: its index entry moves to now and the index lives at
    /// least `ttl_ms` more (one `EVALSHA`, see [`EXTEND`]). A failure is logged; the save
    /// stands.
    async fn extend_index(&self, user: &str, id: &str, used: u64, ttl_ms: Option<u64>) {
        let mut invocation = EXTEND.key(self.user_key(user));
        invocation.arg(id).arg(used_ms(used)).arg(ttl_arg(ttl_ms));
        let name = format!("user:{{{user}}}");
        if let Err(error) = self.script(&invocation, &name).await {
            tracing::warn!(%error, "redis: a user's index could not be extended");
        }
    }

    /// `user`'s index entries: each session id with its score.
    async fn entries(&self, user: &str) -> Result<Vec<(String, f64)>, Error> {
        let mut cmd = Cmd::new();
        cmd.arg("ZRANGE")
            .arg(self.user_key(user))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let name = format!("user:{{{user}}}");
        let reply = self.query(&cmd, "ZRANGE", &name).await?;
        // A flat array of ids and scores (RESP2) or an array of pairs (RESP3): the redis
        // crate reads both.
        redis::from_redis_value(reply.clone()).map_err(|_| self.unexpected("ZRANGE", &name, &reply))
    }

    /// Take `stale` entries (ids with the scores they were listed with) out of `user`'s
    /// index. A failure is only logged: the entries are pruned by a later listing.
    async fn prune(&self, user: &str, stale: &[(String, f64)]) {
        if stale.is_empty() {
            return;
        }
        let key = self.user_key(user);
        let mut invocation = PRUNE.key(&key);
        for (id, score) in stale {
            invocation.arg(id).arg(score);
        }
        if let Err(error) = self.script(&invocation, &format!("user:{{{user}}}")).await {
            tracing::warn!(%error, "redis: ended sessions could not be pruned from a user's index");
        }
    }

    fn key_cmd(&self, name: &str, id: &str) -> Cmd {
        let mut cmd = Cmd::with_capacity(2, name.len() + self.prefix.len() + id.len());
        cmd.arg(name).arg(self.key_arg(id));
        cmd
    }
}

impl<S: Serializer> RedisBackend<S> {
    /// Whether `value` can be one of this backend's ids, checked before a read costs a round
    /// trip: what the default generator makes (16 to 256 characters of URL-safe base64), or,
    /// with a custom id generator, any value up to 256 bytes.
    fn plausible(&self, value: &str) -> bool {
        match self.ids {
            Some(_) => (1..=256).contains(&value.len()),
            None => store::in_generated_format(value),
        }
    }

    /// Whether a live record is stored under `id` (`EXISTS`).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when Redis cannot be reached or answers unexpectedly.
    pub async fn exists(&self, id: &str) -> Result<bool, Error> {
        match self.query(&self.key_cmd("GET", id), "GET", id).await? {
            Value::Nil => Ok(false),
            Value::BulkString(bytes) => Ok(bytes != ENDED_MARKER),
            other => Err(self.unexpected("GET", id, &other)),
        }
    }

    /// Replace the record stored under `id` with `data` as it is (`SET XX`), outside the
    /// session layer's merging saves: for tools and tests. A bound record is entered in its
    /// user's index again.
    ///
    /// # Errors
    ///
    /// [`Error::SessionGone`] when no record is stored under `id` (nothing is stored then);
    /// [`Error::Backend`] when Redis cannot be reached.
    pub async fn update(
        &self,
        id: &str,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let value = self.serializer.serialize(data)?;
        let invocation = self.apply_invocation(id, &[], SaveWrite::Put(&value, self.ttl_ms(ttl)));
        match self.script(&invocation, id).await? {
            Value::Int(1) => {}
            Value::Nil => return Err(Error::SessionGone),
            other => return Err(self.unexpected("EVALSHA", id, &other)),
        }
        if let Some(user) = data.user() {
            self.indexed(user, id, data.last_access_unix(), self.ttl_ms(ttl))
                .await?;
        }
        Ok(id.to_owned())
    }

    /// The record stored as `bytes` under `id`, marked with them as its revision; `None` when
    /// it does not decode (and the policy is to discard it: it is deleted, so the next request
    /// with this cookie does not decode it again).
    async fn decoded(&self, id: &str, bytes: Vec<u8>) -> Result<Option<SessionData>, Error> {
        if bytes == ENDED_MARKER {
            return Ok(None);
        }
        let key = KeyOf {
            prefix: &self.prefix,
            id,
        };
        match store::decode(&self.serializer, &bytes, self.corrupt, &key)? {
            Decoded::Record(data) => Ok(Some(data.with_revision(Revision::bytes(bytes)))),
            Decoded::Corrupt => {
                // Deleted, so the next request with this cookie does not decode it again.
                self.discard(id, "an undecodable record").await;
                Ok(None)
            }
        }
    }
}

impl<S: Serializer> RedisBackend<S> {
    /// Index the session `id`, just stored bound to `user`. A session bound to a user must be
    /// found when that user's sessions are revoked: if the index cannot be written, the
    /// record is deleted again and the save fails.
    async fn indexed(
        &self,
        user: &str,
        id: &str,
        used: u64,
        ttl_ms: Option<u64>,
    ) -> Result<(), Error> {
        if let Err(error) = self.index(user, id, used, ttl_ms).await {
            // Deleted, with no end marker: the client never got this binding.
            self.discard(id, "a session left out of its user's index")
                .await;
            return Err(error);
        }
        Ok(())
    }

    /// Run `script` (taking or renewing the lock of `id` for `token`, for `lease`): whether
    /// the lock is the token's now. `name` names the command in errors.
    async fn lease(
        &self,
        script: &redis::Script,
        name: &str,
        id: &str,
        token: &str,
        lease: Duration,
    ) -> Result<bool, Error> {
        // Redis takes at most a signed 64-bit count of milliseconds.
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut invocation = script.key(self.lock_key(id));
        invocation.arg(token).arg(lease_ms);
        match self.script(&invocation, id).await? {
            Value::Int(1) => Ok(true),
            Value::Int(0) => Ok(false),
            other => Err(self.unexpected(name, id, &other)),
        }
    }

    /// [`SessionBackend::apply`], fenced by the lock `token` holds when there is one.
    async fn apply_fenced(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
        lock: Option<&str>,
    ) -> Result<Option<String>, Error> {
        match session.user().filter(|_| changes.binds_user().is_none()) {
            Some(user) => {
                let used = session.last_access_unix();
                let extending = self.extend_index(user, id, used, self.ttl_ms(ttl));
                let (saved, ()) =
                    tokio::join!(self.save(id, session, changes, ttl, true, lock), extending);
                saved
            }
            None => self.save(id, session, changes, ttl, true, lock).await,
        }
    }

    /// [`SessionBackend::apply`]'s save; `unindex`: a session it ends leaves its user's index
    /// (a move has swapped the entry already).
    async fn save(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
        unindex: bool,
        lock: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let ttl_ms = self.ttl_ms(ttl);
        let accessed = session.last_access_unix();
        // The session is the loaded record with the changes made; loaded by other means (no
        // bytes to compare), it starts from the record as stored now. Either way `merged`
        // carries the stored bytes it was built on (`read` attaches them).
        let mut merged = match session.revision().and_then(Revision::as_bytes) {
            Some(_) => session.clone(),
            None => {
                let current = self.read(id).await?.ok_or(Error::SessionGone)?;
                changes.applied_to(&current, accessed)
            }
        };
        let mut contention = Contention::default();
        while contention.try_again() {
            let value = if merged.is_empty() {
                Vec::new()
            } else {
                self.serializer.serialize(&merged)?
            };
            let expected = merged.revision().and_then(Revision::as_bytes);
            let write = if merged.is_empty() {
                SaveWrite::End
            } else {
                SaveWrite::Set(&value, ttl_ms)
            };
            let invocation =
                self.locked_apply_invocation(id, expected.unwrap_or_default(), write, lock);
            match self.script(&invocation, id).await? {
                Value::Nil => return Err(Error::SessionGone),
                Value::Int(-1) => return Err(Error::LockLost),
                Value::Int(1) => {
                    // A save that binds the session: one more command, for the index.
                    if let Some(user) = changes.binds_user() {
                        self.indexed(user, id, merged.last_access_unix(), ttl_ms)
                            .await?;
                    }
                    return Ok(Some(id.to_owned()));
                }
                Value::Int(0) => {
                    if let (true, Some(ended)) = (unindex, expected) {
                        self.unindex_ended(id, ended).await;
                    }
                    return Ok(None);
                }
                Value::Array(mut current) => match current.pop() {
                    Some(Value::BulkString(bytes)) => {
                        tracing::debug!(
                            store = "redis",
                            "another save came in between; applying the changes again"
                        );
                        // Stored by another writer and unreadable: not saved over it.
                        let current = self.decoded(id, bytes).await?.ok_or(Error::SessionGone)?;
                        merged = changes.applied_to(&current, accessed);
                        contention.collided(&self.turns, id).await;
                    }
                    other => {
                        return Err(self.unexpected(
                            "EVALSHA",
                            id,
                            &Value::Array(other.into_iter().collect()),
                        ));
                    }
                },
                other => return Err(self.unexpected("EVALSHA", id, &other)),
            }
        }
        Err(Error::backend(format!(
            "redis: {} saves of {} in a row found another save in between; gave up",
            contention.tries(),
            masked_key(&self.prefix, id)
        )))
    }

    /// Take `id` out of the index of the user the record `bytes` (as it was before it ended)
    /// was bound to. A failure is logged: a listing prunes the entry later.
    async fn unindex_ended(&self, id: &str, bytes: &[u8]) {
        let Ok(ended) = self.serializer.deserialize(bytes) else {
            return;
        };
        let Some(user) = ended.user() else {
            return;
        };
        let mut cmd = Cmd::new();
        cmd.arg("ZREM").arg(self.user_key(user)).arg(id);
        let name = format!("user:{{{user}}}");
        if let Err(error) = self.query(&cmd, "ZREM", &name).await {
            tracing::warn!(%error, "redis: an ended session stays in its user's index until a listing");
        }
    }

    /// The records of `ids`, in order (`None`: none, ended, or not decoding): one pipeline of
    /// `GET`s on a single node; on a cluster, the `GET`s sent together.
    async fn read_batch<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<Option<SessionData>>, Error> {
        let ids: Vec<&str> = ids.collect();
        if !self.connector.pool().is_one_server() {
            let reads = futures_util::future::join_all(ids.iter().map(|id| self.read(id))).await;
            return reads.into_iter().collect();
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("GET").arg(self.key_arg(id));
        }
        let name = format!("{} sessions", ids.len());
        let reply = match self.connector.pipeline(&pipe).await {
            Ok(reply) => reply,
            Err(Failure::Connect(e)) => return Err(e),
            Err(Failure::Command(e)) => {
                return Err(Error::backend_with(
                    format!("redis: a pipeline of GETs for {name} failed: {e}"),
                    e,
                ));
            }
        };
        let Value::Array(values) = reply else {
            return Err(self.unexpected("GET", &name, &reply));
        };
        let mut records = Vec::with_capacity(ids.len());
        for (id, value) in ids.iter().zip(values) {
            records.push(match value {
                Value::Nil => None,
                Value::BulkString(bytes) => self.decoded(id, bytes).await?,
                other => return Err(self.unexpected("GET", id, &other)),
            });
        }
        Ok(records)
    }

    /// End the session `id` if it is still bound to `user`: its record is deleted only as it
    /// was read (compare and delete, in the save's script), so a session bound to someone
    /// else in between is left alone.
    async fn revoke_one(&self, user: &str, id: &str) -> Result<Revoked, Error> {
        let mut contention = Contention::default();
        while contention.try_again() {
            let Some(record) = self.read(id).await? else {
                return Ok(Revoked::Stale);
            };
            if record.user() != Some(user) {
                return Ok(Revoked::Stale);
            }
            let expected = record.revision().and_then(Revision::as_bytes);
            let invocation =
                self.apply_invocation(id, expected.unwrap_or_default(), SaveWrite::Delete);
            match self.script(&invocation, id).await? {
                Value::Int(0) => return Ok(Revoked::Ended),
                Value::Nil => return Ok(Revoked::Stale),
                // Saved by another request in between: look again.
                Value::Array(_) => {}
                other => return Err(self.unexpected("EVALSHA", id, &other)),
            }
        }
        Err(Error::backend(format!(
            "redis: {} attempts to revoke {} in a row found another save in between; gave up",
            contention.tries(),
            masked_key(&self.prefix, id)
        )))
    }

    /// Revoke the indexed sessions of `user` that `wanted` picks; how many ended.
    ///
    /// A session moving to a new id while this runs enters the index under that id before
    /// its old record goes, so the index is listed again until a listing holds nothing new:
    /// the moved session is found under its new id (or, if its old record was revoked first,
    /// the move is undone by the request that made it). One session that cannot be revoked
    /// does not stop the others: the first error is returned once all were tried.
    async fn revoke_where(
        &self,
        user: &str,
        wanted: impl Fn(&str) -> bool + Send + Sync,
    ) -> Result<usize, Error> {
        let mut revoked = 0;
        let mut seen = std::collections::HashSet::new();
        let mut first_error = None;
        for _ in 0..REVOKE_ROUNDS {
            let fresh: Vec<(String, f64)> = self
                .entries(user)
                .await?
                .into_iter()
                .filter(|(id, _)| wanted(id) && seen.insert(id.clone()))
                .collect();
            if fresh.is_empty() {
                break;
            }
            let mut stale = Vec::new();
            for (id, score) in fresh {
                match self.revoke_one(user, &id).await {
                    Ok(outcome) => {
                        if let Revoked::Ended = outcome {
                            revoked += 1;
                        }
                        stale.push((id, score));
                    }
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            self.prune(user, &stale).await;
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(revoked),
        }
    }
}

#[async_trait]
impl<S: Serializer> SessionBackend for RedisBackend<S> {
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        if !self.plausible(id) {
            return Ok(None);
        }
        match self.query(&self.key_cmd("GET", id), "GET", id).await? {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => self.decoded(id, bytes).await,
            other => Err(self.unexpected("GET", id, &other)),
        }
    }

    /// `SET NX` under a fresh id (minted again on a taken one); a bound session is entered in
    /// its user's index after.
    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        let value = &self.serializer.serialize(data)?;
        let ttl_ms = self.ttl_ms(ttl);
        let id = store::create(
            "redis",
            || self.generate_id(),
            |id| async move { self.set(&id, value, "NX", ttl_ms).await },
        )
        .await?;
        if let Some(user) = data.user() {
            self.indexed(user, &id, data.last_access_unix(), ttl_ms)
                .await?;
        }
        Ok(id)
    }

    /// One round trip when no other save came in between: a script compares the stored bytes
    /// with the ones the session loaded and, when they match, stores the session (or ends the
    /// record it emptied) and resets the TTL. When they differ, the script answers the
    /// current bytes, the changes are applied to them, and the script runs again. A bound
    /// session's save updates its user's index alongside (a second script, sent with the
    /// save's: one more command, no more waiting); an ended one leaves the index (`ZREM`).
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        self.apply_fenced(id, session, changes, ttl, None).await
    }

    fn check_locking(&self) -> Result<(), Error> {
        Ok(())
    }

    /// One `EVALSHA` of a script that sets the lock's key to the token for the lease
    /// (`PX`) unless another token holds it.
    async fn try_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        self.lease(&LOCK, "EVALSHA (lock)", id, token, lease).await
    }

    /// One `EVALSHA`: the lock gets a new lease (`PEXPIRE`) if it still holds `token`.
    async fn renew_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        self.lease(&RENEW, "EVALSHA (renew lock)", id, token, lease)
            .await
    }

    /// One `EVALSHA`: the lock is deleted if it still holds `token`.
    async fn unlock(&self, id: &str, token: &str) -> Result<(), Error> {
        let mut invocation = UNLOCK.key(self.lock_key(id));
        invocation.arg(token);
        self.script(&invocation, id).await.map(drop)
    }

    /// The save's script, with the lock's key and the token: the lock is checked and given
    /// back in the script that stores the record (no command more than an unlocked save).
    async fn apply_locked(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<Option<String>, Error> {
        self.apply_fenced(id, session, changes, ttl, Some(token))
            .await
    }

    /// One `EVALSHA`: the record becomes the end marker for [`ENDED_GRACE`] (nothing is
    /// stored for an id that holds no session); for a bound session, one `ZREM` more takes it
    /// out of its user's index.
    async fn remove(&self, id: &str) -> Result<(), Error> {
        let mut invocation = END.key(self.key_arg(id));
        invocation.arg(ENDED_MARKER).arg(grace_ms());
        match self.script(&invocation, id).await? {
            Value::Nil => Ok(()),
            Value::BulkString(ended) => {
                self.unindex_ended(id, &ended).await;
                Ok(())
            }
            other => Err(self.unexpected("EVALSHA", id, &other)),
        }
    }

    /// `GET`, like [`read`](Self::read); the end marker answers [`Lookup::Ended`].
    async fn lookup(&self, id: &str) -> Result<Lookup, Error> {
        if !self.plausible(id) {
            return Ok(Lookup::Missing);
        }
        match self.query(&self.key_cmd("GET", id), "GET", id).await? {
            Value::Nil => Ok(Lookup::Missing),
            Value::BulkString(bytes) if bytes == ENDED_MARKER => Ok(Lookup::Ended),
            Value::BulkString(bytes) => Ok(match self.decoded(id, bytes).await? {
                Some(data) => Lookup::Live(data),
                None => Lookup::Missing,
            }),
            other => Err(self.unexpected("GET", id, &other)),
        }
    }

    /// `ZRANGE` of the user's index: it may name ended sessions until a listing prunes them.
    async fn user_session_ids(&self, user: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .entries(user)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// `ZRANGE` of the user's index, then the sessions' `GET`s 256 at a time (a single node:
    /// one pipeline, one round trip, per batch, so 2 + ⌈n / 256⌉ round trips for n sessions;
    /// a cluster: sent together on the shared connection, to the nodes that hold them), and
    /// one `EVALSHA` pruning the entries of sessions that ended or are bound to someone else
    /// now.
    async fn user_sessions(&self, user: &str) -> Result<Vec<UserSession>, Error> {
        let entries = self.entries(user).await?;
        let mut sessions = Vec::with_capacity(entries.len());
        let mut stale = Vec::new();
        for batch in entries.chunks(LIST_BATCH) {
            let reads = self
                .read_batch(batch.iter().map(|(id, _)| id.as_str()))
                .await?;
            for ((id, score), read) in batch.iter().zip(reads) {
                match read {
                    Some(record) if record.user() == Some(user) => {
                        sessions.push(UserSession::new(id, record));
                    }
                    _ => stale.push((id.clone(), *score)),
                }
            }
        }
        self.prune(user, &stale).await;
        UserSession::most_recent_first(&mut sessions);
        Ok(sessions)
    }

    fn limit_sessions_per_user(&mut self, max: usize) -> Result<(), Error> {
        self.max_per_user.store(max.max(1), Ordering::Relaxed);
        Ok(())
    }

    /// One `EVALSHA` taking the user's sessions (all but `keep`) out of the index at once;
    /// then for each a `GET` and a compare-and-end `EVALSHA`. A session moving to a new id
    /// meanwhile is taken under the new id, or its move is refused (see
    /// [`move_session`](SessionBackend::move_session)); a save racing the revocation finds its
    /// record ended and does not bring it back.
    async fn revoke_user_sessions(&self, user: &str, keep: Option<&str>) -> Result<usize, Error> {
        let name = format!("user:{{{user}}}");
        let mut invocation = TAKE.key(self.user_key(user));
        invocation.arg(keep.unwrap_or_default());
        let reply = self.script(&invocation, &name).await?;
        let taken: Vec<String> = redis::from_redis_value(reply.clone())
            .map_err(|_| self.unexpected("EVALSHA", &name, &reply))?;
        let mut revoked = 0;
        let mut first_error = None;
        for id in taken {
            match self.revoke_one(user, &id).await {
                Ok(Revoked::Ended) => revoked += 1,
                Ok(Revoked::Stale) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(revoked),
        }
    }

    /// A session bound to a user: `SET NX` of the new record, one `EVALSHA` swapping the old
    /// id for the new one in the user's index (refused when a revocation took the old id: the
    /// new record is deleted again), then the save that ends the old record. Others: as the
    /// default, a create and the ending save.
    async fn move_session(
        &self,
        id: &str,
        session: &SessionData,
        _changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let Some(user) = session.user() else {
            return sessionkit_core::move_by_create_and_apply(self, id, session, ttl).await;
        };
        // Bound before this request (not a login binding it now): its entry must still be
        // in the index, or a revocation took it.
        let was_bound = match session.revision().and_then(Revision::as_bytes) {
            Some(bytes) if bytes != ENDED_MARKER => {
                matches!(self.serializer.deserialize(bytes), Ok(loaded) if loaded.user() == Some(user))
            }
            _ => false,
        };
        let fresh = session.without_revision();
        let value = &self.serializer.serialize(&fresh)?;
        let ttl_ms = self.ttl_ms(ttl);
        let new_id = store::create(
            "redis",
            || self.generate_id(),
            |new_id| async move { self.set(&new_id, value, "NX", ttl_ms).await },
        )
        .await?;
        let now_ms = used_ms(session.last_access_unix());
        let mut swap = SWAP.key(self.user_key(user));
        swap.arg(id)
            .arg(&new_id)
            .arg(now_ms)
            .arg(if was_bound { "1" } else { "0" })
            .arg(ttl_arg(ttl_ms))
            .arg(self.max_per_user.load(Ordering::Relaxed));
        // An array: 1 (swapped) or 0 (refused), then the ids the per-user limit took.
        let swapped = match self.script(&swap, &new_id).await {
            Ok(reply) => redis::from_redis_value::<Vec<Value>>(reply.clone())
                .ok()
                .and_then(|items| {
                    let (first, rest) = items.split_first()?;
                    let status = redis::from_redis_value::<i64>(first.clone()).ok()?;
                    let victims =
                        redis::from_redis_value::<Vec<String>>(Value::Array(rest.to_vec())).ok()?;
                    Some((status, victims))
                })
                .ok_or_else(|| self.unexpected("EVALSHA", &new_id, &reply)),
            Err(error) => Err(error),
        };
        match swapped {
            Ok((1, victims)) => self.end_over_limit(&victims).await,
            other => {
                self.discard(&new_id, "a session given up while moving")
                    .await;
                return match other {
                    Ok(_) => Err(Error::SessionGone),
                    Err(error) => Err(error),
                };
            }
        }
        let (emptied, clear) = store::emptying(session);
        match self.save(id, &emptied, &clear, ttl, false, None).await {
            Ok(_) => Ok(new_id),
            Err(error) => {
                // The old record ended meanwhile (or the save failed): the move is undone.
                self.prune(user, &[(new_id.clone(), now_ms as f64)]).await;
                self.discard(&new_id, "a session given up while moving")
                    .await;
                Err(error)
            }
        }
    }

    async fn revoke_user_session(&self, user: &str, device: &DeviceId) -> Result<bool, Error> {
        Ok(self.revoke_where(user, |id| device.is_of(id)).await? > 0)
    }

    fn generate_id(&self) -> String {
        match &self.ids {
            Some(ids) => ids(),
            None => sessionkit_core::generate_id(),
        }
    }
}

/// A session's key, written straight into the command without building a `String`.
struct Key<'a> {
    prefix: &'a str,
    id: &'a str,
}

impl ToRedisArgs for Key<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        // The writer appends to the command's buffer in memory: it cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.id.as_bytes());
    }
}

/// The key of session `id` for messages: the prefix and the first few characters of the id,
/// never the whole id (it is a bearer secret, and messages end up in logs).
fn masked_key(prefix: &str, id: &str) -> String {
    format!("{prefix}{}", store::masked(id))
}

/// Where a record is, for messages about it: its key with the id masked, formatted only when
/// a message is made.
struct KeyOf<'a> {
    prefix: &'a str,
    id: &'a str,
}

impl fmt::Display for KeyOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis key {}", masked_key(self.prefix, self.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_keys_show_at_most_six_characters_of_the_id() {
        let id = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";
        assert_eq!(masked_key("session:", id), "session:AbCdEf…");
        assert_eq!(masked_key("p:", "abcd"), "p:ab…");
        assert_eq!(masked_key("p:", ""), "p:");
        assert_eq!(masked_key("p:", "ключключ"), "p:ключ…");
    }

    #[test]
    fn ttls_combine_the_write_and_the_backend_expire() {
        let pool = deadpool_redis::Config::from_url("redis://127.0.0.1:1")
            .create_pool(None)
            .unwrap();
        let backend = RedisBackend::from_pool(pool);
        assert_eq!(backend.ttl_ms(None), None);
        assert_eq!(backend.ttl_ms(Some(Duration::from_secs(2))), Some(2000));
        assert_eq!(backend.ttl_ms(Some(Duration::ZERO)), Some(1));
        assert_eq!(backend.ttl_ms(Some(Duration::MAX)), Some(1 << 60));
        let backend = backend.with_expire(Duration::from_secs(60));
        assert_eq!(backend.ttl_ms(None), Some(60_000));
        assert_eq!(backend.ttl_ms(Some(Duration::from_secs(2))), Some(2000));
        assert_eq!(backend.with_expire(Duration::ZERO).ttl_ms(None), None);
    }

    #[test]
    fn keys_are_written_whole_into_one_argument() {
        let pool = deadpool_redis::Config::from_url("redis://127.0.0.1:1")
            .create_pool(None)
            .unwrap();
        let backend = RedisBackend::from_pool(pool).with_prefix("p:");
        let cmd = backend.set_cmd("id1", b"v", "NX", Some(5));
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .map(|arg| match arg {
                deadpool_redis::redis::Arg::Simple(bytes) => bytes.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        let expected: Vec<&[u8]> = vec![b"SET", b"p:id1", b"v", b"NX", b"PX", b"5"];
        assert_eq!(args, expected);
        assert_eq!(backend.key("id1"), "p:id1");
    }
}
