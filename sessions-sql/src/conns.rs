//! The connections a backend keeps checked out of its sqlx pool.
//!
//! A sqlx pool sends a ping round trip on every connection given back to it (to vet it for
//! the next user), and another before handing out an idle one when `test_before_acquire` is
//! on, its default. Going through the pool for each operation therefore costs two or three
//! round trips where one statement needs one. The backend instead keeps the connections it
//! has used (at most `max` of them) and hands them from one operation to the next itself, so
//! an operation is exactly one statement and one round trip.
//!
//! The pool stays in charge of opening connections, and gets a connection back (and closes
//! or reuses it by its own rules) when:
//! - a statement failed in a way that leaves the connection in doubt (I/O, protocol, the
//!   server closing it), or the operation was cancelled mid-statement;
//! - it sat unused here for [`HOLD_IDLE`] (a task of the backend checks every second), so
//!   after a burst the application gets its pool back;
//! - it sat unused longer than the pool's `idle_timeout`, or has been held longer than its
//!   `max_lifetime` (checked whenever the backend takes a connection);
//! - the pool is closed (the same task watches for that, so `pool.close().await` is never
//!   kept waiting by the backend), or the backend is dropped.

use sqlx::pool::PoolConnection;
use sqlx::{ConnectOptions, Connection, Database, Pool};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A connection checked out of the pool, counted while the backend has it.
struct Held<DB: Database> {
    conn: PoolConnection<DB>,
    count: Arc<AtomicUsize>,
}

impl<DB: Database> Drop for Held<DB> {
    fn drop(&mut self) {
        // The connection itself goes back to the pool as it is dropped.
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Idle<DB: Database> {
    conn: Held<DB>,
    held_since: Instant,
    idle_since: Instant,
}

impl<DB: Database> Drop for Conns<DB> {
    fn drop(&mut self) {
        // Handing a connection back to a sqlx pool spawns a task, which panics without a tokio
        // runtime (a backend dropped after its runtime, at the end of `main`). Then the kept
        // connections are left to the operating system instead.
        if tokio::runtime::Handle::try_current().is_err() {
            let idle =
                std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
            for conn in idle {
                self.held.fetch_sub(1, Ordering::Relaxed);
                std::mem::forget(conn);
            }
        }
    }
}

/// Why no connection could be had.
pub enum LeaseError {
    /// None within the pool's acquire timeout.
    TimedOut {
        /// Whether the wait was for one of this backend's own `max` connections (all busy),
        /// rather than for the pool.
        all_held_busy: bool,
    },
    /// The pool refused (closed, or connecting failed with a non-retryable error).
    Pool(sqlx::Error),
}

/// How long a held connection may go unused before it goes back to the pool.
pub const HOLD_IDLE: Duration = Duration::from_secs(5);

/// How often held connections are checked for that.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Conns<DB: Database> {
    pool: Pool<DB>,
    max: usize,
    idle: Mutex<VecDeque<Idle<DB>>>,
    permits: Semaphore,
    watching: AtomicBool,
    /// How many connections the backend has checked out (in use or idle).
    held: Arc<AtomicUsize>,
    /// The last explanation of a failed acquire, reused for a second so that many failing
    /// requests do not each try to connect.
    diagnosis: tokio::sync::Mutex<Option<(Instant, String)>>,
}

/// One operation's use of a connection. Dropping it without [`keep`](Lease::keep) gives the
/// connection back to the pool (which checks it before anyone reuses it).
pub struct Lease<'a, DB: Database> {
    conns: &'a Conns<DB>,
    conn: Held<DB>,
    held_since: Instant,
    /// When the lease began: also taken as the moment the connection goes idle again, so an
    /// operation reads the clock once (the idle limits are seconds to minutes; a statement's
    /// duration does not matter to them).
    leased_at: Instant,
    /// Whether the connection had already served an earlier operation.
    pub reused: bool,
    _permit: SemaphorePermit<'a>,
}

impl<DB: Database> Lease<'_, DB> {
    pub fn conn(&mut self) -> &mut DB::Connection {
        &mut self.conn.conn
    }

    /// The statement finished and the connection is in a clean state: keep it for the next
    /// operation.
    pub fn keep(self) {
        let Lease {
            conns,
            conn,
            held_since,
            leased_at,
            ..
        } = self;
        if conns.pool.is_closed() {
            return; // dropped: back to the (closed) pool
        }
        conns.lock_idle().push_back(Idle {
            conn,
            held_since,
            idle_since: leased_at,
        });
    }
}

impl<DB: Database> Conns<DB> {
    pub fn new(pool: Pool<DB>, max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Conns {
            pool,
            max,
            idle: Mutex::new(VecDeque::with_capacity(max)),
            permits: Semaphore::new(max),
            watching: AtomicBool::new(false),
            held: Arc::new(AtomicUsize::new(0)),
            diagnosis: tokio::sync::Mutex::new(None),
        }
    }

    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn acquire_timeout(&self) -> Duration {
        self.pool.options().get_acquire_timeout()
    }

    fn lock_idle(&self) -> MutexGuard<'_, VecDeque<Idle<DB>>> {
        // Entries are pushed and popped whole: a poisoned lock holds no torn state.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Give every unused connection back to the pool (after a connection failure, when the
    /// others are likely dead too, or when the pool closes).
    pub fn release_idle(&self) {
        let released: Vec<Idle<DB>> = self.lock_idle().drain(..).collect();
        drop(released); // outside the lock: each drop hands the connection to the pool
    }

    /// A connection for one operation: one this backend already holds unless `fresh`,
    /// otherwise a new one from the pool; all within the pool's acquire timeout.
    pub async fn lease(self: &Arc<Self>, fresh: bool) -> Result<Lease<'_, DB>, LeaseError> {
        if self.pool.is_closed() {
            return Err(LeaseError::Pool(sqlx::Error::PoolClosed));
        }
        // The clock is read once an operation: it is slow enough to show in every request.
        let now = Instant::now();
        let deadline = || tokio::time::Instant::from_std(now) + self.acquire_timeout();
        let permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            // The waits are boxed: they are rare (all connections busy, or a new connection),
            // and inline they would make every operation's future, which is moved and boxed
            // on each request, several times larger.
            Err(_) => {
                match Box::pin(tokio::time::timeout_at(deadline(), self.permits.acquire())).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(LeaseError::Pool(sqlx::Error::PoolClosed)),
                    Err(_) => {
                        return Err(LeaseError::TimedOut {
                            all_held_busy: true,
                        });
                    }
                }
            }
        };
        if !fresh {
            if let Some((conn, held_since)) = self.pop_idle(now) {
                return Ok(Lease {
                    conns: self,
                    conn,
                    held_since,
                    leased_at: now,
                    reused: true,
                    _permit: permit,
                });
            }
        }
        self.watch();
        match Box::pin(tokio::time::timeout_at(deadline(), self.pool.acquire())).await {
            Ok(Ok(conn)) => Ok(Lease {
                conns: self,
                conn: self.count(conn),
                held_since: now,
                leased_at: now,
                reused: false,
                _permit: permit,
            }),
            Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => Err(LeaseError::TimedOut {
                all_held_busy: false,
            }),
            Ok(Err(e)) => Err(LeaseError::Pool(e)),
        }
    }

    /// The most recently used held connection; those idle or held for longer than the pool
    /// allows go back to it on the way.
    fn count(&self, conn: PoolConnection<DB>) -> Held<DB> {
        self.held.fetch_add(1, Ordering::Relaxed);
        Held {
            conn,
            count: Arc::clone(&self.held),
        }
    }

    fn pop_idle(&self, now: Instant) -> Option<(Held<DB>, Instant)> {
        let options = self.pool.options();
        let idle_timeout = options.get_idle_timeout();
        let max_lifetime = options.get_max_lifetime();
        // Stale: idle since before `now - idle_timeout`, or held since before
        // `now - max_lifetime` (cutoffs computed once; comparing instants is cheaper than
        // measuring each one's age). A cutoff before the clock's origin makes nothing stale.
        let idle_cutoff = idle_timeout.and_then(|t| now.checked_sub(t));
        let lifetime_cutoff = max_lifetime.and_then(|t| now.checked_sub(t));
        let stale = |idle: &Idle<DB>| {
            idle_cutoff.is_some_and(|cutoff| idle.idle_since < cutoff)
                || lifetime_cutoff.is_some_and(|cutoff| idle.held_since < cutoff)
        };
        let mut released = Vec::new();
        let found = {
            let mut queue = self.lock_idle();
            // The front has been idle longest.
            while queue.front().is_some_and(stale) {
                released.extend(queue.pop_front());
            }
            loop {
                match queue.pop_back() {
                    Some(idle) if stale(&idle) => released.push(idle),
                    Some(idle) => break Some((idle.conn, idle.held_since)),
                    None => break None,
                }
            }
        };
        drop(released);
        found
    }

    /// Once: a task that gives held connections back to the pool when they have been unused
    /// for [`HOLD_IDLE`], and all of them when the pool is closed (so `pool.close().await` is
    /// never kept waiting by the backend). It ends soon after the backend is dropped.
    fn watch(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.watching.store(false, Ordering::Release);
            return;
        };
        let conns = Arc::downgrade(self);
        let mut closed = self.pool.close_event();
        runtime.spawn(async move {
            let sweep = async {
                loop {
                    tokio::time::sleep(SWEEP_EVERY).await;
                    match conns.upgrade() {
                        Some(conns) => conns.release_unused(HOLD_IDLE),
                        None => return, // the backend is gone, and its connections with it
                    }
                }
            };
            // `Err` when the pool closed first.
            if closed.do_until(sweep).await.is_err() {
                if let Some(conns) = conns.upgrade() {
                    conns.release_idle();
                }
            }
        });
    }

    /// Give back the held connections unused for longer than `idle`.
    fn release_unused(&self, idle: Duration) {
        let released: Vec<Idle<DB>> = {
            let mut queue = self.lock_idle();
            let mut released = Vec::new();
            // The front has been idle longest.
            while queue.front().is_some_and(|c| c.idle_since.elapsed() > idle) {
                released.extend(queue.pop_front());
            }
            released
        };
        drop(released);
    }

    /// Why no connection could be had within the acquire timeout, naming the cause: all
    /// connections busy, or the database not answering (found out by one direct connection
    /// attempt, at most once a second).
    pub async fn explain_timeout(&self, all_held_busy: bool) -> String {
        let timeout = self.acquire_timeout();
        // Every operation slot taken while the backend holds fewer connections than slots:
        // the operations holding them are still waiting to connect. Find out why, below.
        if all_held_busy && self.held.load(Ordering::Relaxed) >= self.max {
            return format!(
                "no connection became free within {timeout:?} (the pool's acquire timeout): all \
                 {} connections this backend may hold are busy",
                self.max
            );
        }
        let max = self.pool.options().get_max_connections();
        if self.pool.size() >= max {
            return format!(
                "no connection became free within {timeout:?} (the pool's acquire timeout): all \
                 {max} connections of the pool are in use"
            );
        }
        let mut last = self.diagnosis.lock().await;
        if let Some((at, message)) = last.as_ref() {
            if at.elapsed() < Duration::from_secs(1) {
                return message.clone();
            }
        }
        let options = self.pool.connect_options();
        let probe = tokio::time::timeout(timeout.min(Duration::from_secs(2)), options.connect());
        let message = match probe.await {
            Ok(Err(e)) => format!("could not connect to the database within {timeout:?}: {e}"),
            Err(_) => {
                format!("could not connect to the database within {timeout:?}: it does not answer")
            }
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                format!(
                    "could not get a connection from the pool within {timeout:?} (the \
                     database accepts connections again now)"
                )
            }
        };
        *last = Some((Instant::now(), message.clone()));
        message
    }
}
