//! The connection every operation shares, and how it is replaced when it fails.
//!
//! A checkout from a deadpool-redis pool costs a round trip of its own: the pool's manager
//! sends `PING` (single node: `UNWATCH` + `PING`) to vet a reused connection before handing it
//! out. Redis connections from the `redis` crate are multiplexed, so one of them serves any
//! number of concurrent requests, pipelined. The backend therefore checks out *one* connection,
//! keeps it, and hands each operation a clone (a few reference counts): one operation is one
//! round trip. The pool is visited again only when that connection has failed.

use deadpool_redis::redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisResult, ScriptInvocation, ServerErrorKind, Value,
};
use sessionkit_core::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// The pool a backend draws its connection from.
#[derive(Clone)]
pub(crate) enum Pool {
    Single(deadpool_redis::Pool),
    #[cfg(feature = "cluster")]
    Cluster(deadpool_redis::cluster::Pool),
    /// The master of a Sentinel-monitored group: each new connection asks the sentinels
    /// where the master is now (and checks that it says it is one).
    #[cfg(feature = "sentinel")]
    Sentinel(deadpool_redis::sentinel::Pool),
}

impl Pool {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Pool::Single(_) => "single node",
            #[cfg(feature = "cluster")]
            Pool::Cluster(_) => "cluster",
            #[cfg(feature = "sentinel")]
            Pool::Sentinel(_) => "sentinel",
        }
    }

    /// Whether every key lives on the one server the connection reaches, so a pipeline of
    /// commands on any keys can be written at once.
    pub(crate) fn is_one_server(&self) -> bool {
        match self {
            Pool::Single(_) => true,
            #[cfg(feature = "cluster")]
            Pool::Cluster(_) => false,
            #[cfg(feature = "sentinel")]
            Pool::Sentinel(_) => true,
        }
    }

    async fn get(&self) -> Result<Held, deadpool_redis::PoolError> {
        match self {
            Pool::Single(pool) => pool.get().await.map(Held::Single),
            #[cfg(feature = "cluster")]
            Pool::Cluster(pool) => pool.get().await.map(Held::Cluster),
            #[cfg(feature = "sentinel")]
            Pool::Sentinel(pool) => pool.get().await.map(Held::Sentinel),
        }
    }
}

/// A connection checked out of the pool and kept by the backend.
enum Held {
    Single(deadpool_redis::Connection),
    #[cfg(feature = "cluster")]
    Cluster(deadpool_redis::cluster::Connection),
    #[cfg(feature = "sentinel")]
    Sentinel(deadpool_redis::sentinel::Connection),
}

impl Held {
    fn conn(&self) -> Conn {
        match self {
            Held::Single(held) => Conn::Single((**held).clone()),
            #[cfg(feature = "cluster")]
            Held::Cluster(held) => Conn::Cluster((**held).clone()),
            #[cfg(feature = "sentinel")]
            Held::Sentinel(held) => Conn::Single((**held).clone()),
        }
    }

    /// Take a failed connection out of the pool's books and close it, so the pool never hands
    /// it out again.
    fn discard(self) {
        match self {
            Held::Single(held) => drop(deadpool_redis::Connection::take(held)),
            #[cfg(feature = "cluster")]
            Held::Cluster(held) => drop(deadpool_redis::cluster::Connection::take(held)),
            #[cfg(feature = "sentinel")]
            Held::Sentinel(held) => drop(deadpool_redis::sentinel::Connection::take(held)),
        }
    }
}

/// One operation's use of the shared connection.
pub(crate) enum Conn {
    /// A connection to one server: a single node, or the master a Sentinel named.
    Single(deadpool_redis::redis::aio::MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(deadpool_redis::cluster::ClusterConnection),
}

/// What one operation sends: a command, a script run through `redis::Script` (which loads
/// the script when the server does not know it yet), or a pipeline of commands written at
/// once (single node only: a cluster routes a pipeline to one node).
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    Command(&'a Cmd),
    Script(&'a ScriptInvocation<'a>),
    Pipeline(&'a Pipeline),
}

impl Conn {
    async fn send(&mut self, request: Request<'_>) -> RedisResult<Value> {
        match (self, request) {
            (Conn::Single(conn), Request::Command(cmd)) => cmd.query_async(conn).await,
            (Conn::Single(conn), Request::Script(script)) => script.invoke_async(conn).await,
            (Conn::Single(conn), Request::Pipeline(pipe)) => pipe.query_async(conn).await,
            #[cfg(feature = "cluster")]
            (Conn::Cluster(conn), Request::Command(cmd)) => cmd.query_async(conn).await,
            #[cfg(feature = "cluster")]
            (Conn::Cluster(conn), Request::Script(script)) => script.invoke_async(conn).await,
            #[cfg(feature = "cluster")]
            (Conn::Cluster(conn), Request::Pipeline(pipe)) => pipe.query_async(conn).await,
        }
    }
}

impl Pool {
    /// Whether `error` means the shared connection must be replaced: it is dead (Redis
    /// restarted, the socket dropped or was killed), or, through Sentinel, it reaches a server
    /// that is no longer the master (`READONLY`: after a failover the old master took the
    /// replica's place, and a new connection asks the sentinels for the master again). A
    /// single node or a cluster that answers `READONLY` is left as it is: a new connection
    /// would reach the same server.
    fn must_replace(&self, error: &RedisError) -> bool {
        error.is_unrecoverable_error()
            || (self.follows_sentinels()
                && error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly))
    }

    fn follows_sentinels(&self) -> bool {
        #[cfg(feature = "sentinel")]
        if let Pool::Sentinel(_) = self {
            return true;
        }
        false
    }

    /// Close the connections the pool keeps idle: after the master changed they may reach
    /// the old one (a pool shared with the application hands them out again after a `PING`
    /// alone). Only a Sentinel pool is concerned.
    fn forget_idle(&self) {
        #[cfg(feature = "sentinel")]
        if let Pool::Sentinel(pool) = self {
            pool.retain(|_, _| false);
        }
    }
}

struct Slot {
    generation: u64,
    /// The master switches seen when the connection was made (always 0 without a watch).
    switches: u64,
    held: Held,
}

/// Why a query failed.
pub(crate) enum Failure {
    /// No connection could be had: the error is complete as it is.
    Connect(Error),
    /// Redis (or the connection to it) failed the command.
    Command(RedisError),
}

/// The pool, the connection checked out of it, and the rules for replacing that connection.
pub(crate) struct Connector {
    pool: Pool,
    timeout: Duration,
    slot: RwLock<Option<Slot>>,
    /// Held while checking out a connection, so concurrent operations that find no connection
    /// wait for one checkout instead of each making their own. Holds the last checkout error.
    gate: tokio::sync::Mutex<Option<String>>,
    failed_checkouts: AtomicU64,
    generations: AtomicU64,
    /// Sentinel's master switches, when the pool reaches a Sentinel group's master.
    #[cfg(feature = "sentinel")]
    watch: Option<crate::sentinel::Watch>,
}

impl Connector {
    pub(crate) fn new(pool: Pool, timeout: Duration) -> Self {
        Connector {
            pool,
            timeout,
            slot: RwLock::new(None),
            gate: tokio::sync::Mutex::new(None),
            failed_checkouts: AtomicU64::new(0),
            generations: AtomicU64::new(0),
            #[cfg(feature = "sentinel")]
            watch: None,
        }
    }

    /// A new connector on the same pool (and watching the same sentinels), with another
    /// pool timeout.
    pub(crate) fn with_timeout(&self, timeout: Duration) -> Self {
        let connector = Connector::new(self.pool.clone(), timeout);
        #[cfg(feature = "sentinel")]
        if let Some(watch) = &self.watch {
            return connector.watching(watch.sentinels().clone());
        }
        connector
    }

    /// A connector that also follows the master switches `sentinels` announce.
    #[cfg(feature = "sentinel")]
    pub(crate) fn watching(mut self, sentinels: crate::sentinel::Sentinels) -> Self {
        self.watch = Some(crate::sentinel::Watch::new(sentinels));
        self
    }

    /// How many master switches the sentinels announced (0 when nothing is watched).
    fn switches(&self) -> u64 {
        #[cfg(feature = "sentinel")]
        if let Some(watch) = &self.watch {
            return watch.switches();
        }
        0
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn read_slot(&self) -> RwLockReadGuard<'_, Option<Slot>> {
        // The slot is replaced whole under the lock, so a poisoned lock holds no torn state.
        self.slot.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_slot(&self) -> RwLockWriteGuard<'_, Option<Slot>> {
        self.slot.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared connection, unless there is none or it was made before the master's last
    /// switch.
    fn cached(&self) -> Option<(u64, Conn)> {
        let switches = self.switches();
        self.read_slot()
            .as_ref()
            .filter(|slot| slot.switches == switches)
            .map(|slot| (slot.generation, slot.held.conn()))
    }

    /// Run one command: one round trip on the shared connection. If that connection turns out
    /// to be dead (Redis restarted, the socket dropped), it is replaced and the command is sent
    /// once more on the new one; every command and script this backend sends is safe to
    /// repeat.
    pub(crate) async fn query(&self, cmd: &Cmd) -> Result<Value, Failure> {
        self.send(Request::Command(cmd)).await
    }

    /// Write a pipeline of commands at once and read their replies: one round trip, retried
    /// as [`query`](Self::query) retries a command. For one server only
    /// ([`Pool::is_one_server`]).
    pub(crate) async fn pipeline(&self, pipe: &Pipeline) -> Result<Value, Failure> {
        self.send(Request::Pipeline(pipe)).await
    }

    /// Run a script, as [`query`](Self::query) runs a command.
    pub(crate) async fn invoke(&self, script: &ScriptInvocation<'_>) -> Result<Value, Failure> {
        self.send(Request::Script(script)).await
    }

    async fn send(&self, request: Request<'_>) -> Result<Value, Failure> {
        let (generation, mut conn, reused) = match self.cached() {
            Some((generation, conn)) => (generation, conn, true),
            None => {
                // Checkouts are boxed: they are rare (the connection is kept), and inline the
                // pool's future would make every command's future, which is moved and boxed
                // on each request, several times larger.
                let (generation, conn) =
                    Box::pin(self.checkout()).await.map_err(Failure::Connect)?;
                (generation, conn, false)
            }
        };
        match conn.send(request).await {
            Err(e) if self.pool.must_replace(&e) => {
                self.invalidate(generation);
                if !reused {
                    return Err(Failure::Command(e));
                }
                tracing::debug!(error = %e, "redis: the shared connection failed; retrying on a new one");
                let (generation, mut conn) =
                    Box::pin(self.checkout()).await.map_err(Failure::Connect)?;
                Box::pin(conn.send(request)).await.map_err(|e| {
                    if self.pool.must_replace(&e) {
                        self.invalidate(generation);
                    }
                    Failure::Command(e)
                })
            }
            other => other.map_err(Failure::Command),
        }
    }

    /// Drop the connection of `generation` if it is still the shared one.
    fn invalidate(&self, generation: u64) {
        self.discard_if(|slot| slot.generation == generation);
    }

    /// Take the shared connection out of use and close it if `stale` says so; whether it
    /// did.
    fn discard_if(&self, stale: impl FnOnce(&Slot) -> bool) -> bool {
        let taken = {
            let mut slot = self.write_slot();
            if slot.as_ref().is_some_and(stale) {
                slot.take()
            } else {
                None
            }
        };
        taken.map(|slot| slot.held.discard()).is_some()
    }

    /// Get a connection from the pool and share it, within the pool timeout.
    async fn checkout(&self) -> Result<(u64, Conn), Error> {
        let failures_seen = self.failed_checkouts.load(Ordering::Acquire);
        let attempt = async {
            let mut last_error = self.gate.lock().await;
            if let Some(cached) = self.cached() {
                return Ok(cached);
            }
            if self.failed_checkouts.load(Ordering::Acquire) != failures_seen {
                if let Some(message) = last_error.as_ref() {
                    // A checkout failed while this one waited its turn: share that answer
                    // rather than queue one more attempt behind it.
                    return Err(Error::backend(message.clone()));
                }
            }
            let switches = self.switches();
            // A connection made before the master's last switch goes first (a small pool
            // would otherwise wait for it), and with it the pool's idle ones, which may reach
            // the old master too.
            if self.discard_if(|slot| slot.switches != switches) {
                self.pool.forget_idle();
            }
            match self.pool.get().await {
                Ok(held) => {
                    let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
                    let conn = held.conn();
                    let old = self.write_slot().replace(Slot {
                        generation,
                        switches,
                        held,
                    });
                    drop(old);
                    *last_error = None;
                    Ok((generation, conn))
                }
                Err(e) => {
                    let message = format!("redis: could not get a connection from the pool: {e}");
                    *last_error = Some(message.clone());
                    self.failed_checkouts.fetch_add(1, Ordering::Release);
                    Err(Error::backend_with(message, e))
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::backend(format!(
                "redis: could not get a connection from the pool within {:?} (the pool timeout)",
                self.timeout
            ))),
        }
    }
}
