//! Session locks: on a locked route, the requests of one session run one at a time, across
//! processes and machines, through a lock the backend keeps
//! ([`SessionBackend::try_lock`](crate::SessionBackend::try_lock)).
//!
//! A request takes its session's lock before the session is read, and gives it back with its
//! save: the save is fenced by the lock
//! ([`apply_locked`](crate::SessionBackend::apply_locked)), so a request that outlived the
//! lock's lease cannot overwrite what the next holder saved. Within one process the waiters
//! of a session queue first come, first served, and only the first of them asks the backend;
//! waiters in other processes ask again after a pause that doubles (2 ms up to 50 ms, with
//! jitter), until the wait is spent.

use crate::session::Inner;
use crate::store::{Turn, Turns};
use crate::{Error, LazySession};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a lock is held at most before another request may take it, unless given:
/// Laravel's default for session blocking.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// How long a request waits for its session's lock at most, unless given: Laravel's default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The longest lease or wait: a day (longer ones are cut to it).
pub const LONGEST: Duration = Duration::from_secs(24 * 3600);

const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// How the requests of a locked route take their session's lock: the lease (how long a lock
/// lasts if its request never gives it back), the wait (how long a request waits for it),
/// and the queue of this process's waiters. Clones share the queue.
///
/// ```
/// use sessionkit_core::Locking;
/// use std::time::Duration;
///
/// let locking = Locking::new()
///     .with_lease(Duration::from_secs(5))
///     .with_wait(Duration::from_secs(2));
/// assert_eq!(locking.lease(), Duration::from_secs(5));
/// assert_eq!(Locking::new().wait(), Duration::from_secs(10));
/// ```
#[derive(Clone, Debug)]
pub struct Locking {
    lease: Duration,
    wait: Duration,
    queue: Arc<Turns>,
}

impl Default for Locking {
    fn default() -> Self {
        Locking::new()
    }
}

impl Locking {
    /// A lease of [`DEFAULT_LEASE`] and a wait of [`DEFAULT_WAIT`] (10 s each).
    pub fn new() -> Self {
        Locking {
            lease: DEFAULT_LEASE,
            wait: DEFAULT_WAIT,
            queue: Arc::default(),
        }
    }

    /// Hold a lock for at most `lease`: a request still running after it loses the lock, and
    /// its save is refused ([`Error::LockLost`]). Longer than the slowest handler of the
    /// route; at most [`LONGEST`] (a day).
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.min(LONGEST);
        self
    }

    /// Wait at most `wait` for the lock (at most [`LONGEST`], a day); then the request fails
    /// with [`Error::LockTimeout`] without running.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(LONGEST);
        self
    }

    /// How long a lock lasts if its request never gives it back.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How long a request waits for its session's lock.
    pub fn wait(&self) -> Duration {
        self.wait
    }
}

/// The lock a request holds on its session.
pub(crate) struct HeldLock {
    pub(crate) id: Arc<str>,
    pub(crate) token: String,
    /// The lease it was taken for, and is renewed for.
    pub(crate) lease: Duration,
    /// This process's turn on the session: the next local waiter starts when it goes.
    _turn: Turn,
}

/// A lock being taken: if the request is dropped while it waits for the backend's answer
/// (the client went away, an outer timeout), the lock the backend may have taken for it is
/// given back rather than left to its lease.
struct Taking<'a> {
    inner: &'a Inner,
    held: Option<HeldLock>,
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            spawn_release(Arc::clone(&self.inner.context), Box::new(held));
        }
    }
}

impl LazySession {
    /// Take the lock of the session the client's cookie names (nothing to lock for a client
    /// without one: its session is new), waiting as `locking` says. A session read before
    /// the lock was taken (the layer's autoload, a middleware outside the lock's layer) is
    /// read again under it, with the changes made to it so far applied again.
    pub(crate) async fn lock(&self, locking: &Locking) -> Result<(), Error> {
        let id = match &self.inner.cookie {
            Some(cookie) if !cookie.is_empty() => Arc::clone(cookie),
            _ => return Ok(()),
        };
        if self.inner.state().lock.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        let timed_out = || Error::LockTimeout {
            waited: started.elapsed(),
        };
        let deadline = started + locking.wait;
        let Ok(turn) = tokio::time::timeout(locking.wait, locking.queue.take(&id)).await else {
            return Err(timed_out());
        };
        let backend = self.inner.context.backend();
        let token = crate::generate_id();
        let mut taking = Taking {
            inner: &self.inner,
            held: Some(HeldLock {
                id: Arc::clone(&id),
                token: token.clone(),
                lease: locking.lease,
                _turn: turn,
            }),
        };
        let mut pause = FIRST_PAUSE;
        while !backend.try_lock(&id, &token, locking.lease).await? {
            let now = Instant::now();
            if now >= deadline {
                // Not taken: nothing to give back.
                taking.held = None;
                return Err(timed_out());
            }
            tokio::time::sleep(jittered(pause).min(deadline - now)).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
        self.inner.locked.store(true, Ordering::Release);
        let read_before = {
            let mut state = self.inner.state();
            state.lock = taking.held.take().map(Box::new);
            state.loaded
        };
        if read_before {
            self.reload().await?;
        }
        Ok(())
    }
}

/// Between half of `pause` and all of it, so waiters of several processes spread out.
fn jittered(pause: Duration) -> Duration {
    let half = pause / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
    half + Duration::from_micros(crate::store::random_below(spread).unwrap_or(spread))
}

impl Inner {
    /// The token and lease of the lock this request holds on `id`, if it holds one.
    fn held_on(&self, id: &str) -> Option<(String, Duration)> {
        if !self.locked.load(Ordering::Acquire) {
            return None;
        }
        let state = self.state();
        state
            .lock
            .as_ref()
            .filter(|held| *held.id == *id)
            .map(|held| (held.token.clone(), held.lease))
    }

    /// The token of the lock this request holds on `id`, if it holds one.
    pub(crate) fn lock_on(&self, id: &str) -> Option<String> {
        self.held_on(id).map(|(token, _)| token)
    }

    /// Before a step the backend does not fence (a login moving the session, a `delete()`
    /// ending it): check that the request still holds the lock of `id`, renewing its lease,
    /// so the step runs within a fresh lease. [`Error::LockLost`] when another request took
    /// it since.
    pub(crate) async fn renew_lock(&self, id: &str) -> Result<(), Error> {
        let Some((token, lease)) = self.held_on(id) else {
            return Ok(());
        };
        if self.context.backend().renew_lock(id, &token, lease).await? {
            Ok(())
        } else {
            // Not ours any more: nothing to give back.
            self.forget_lock();
            Err(Error::LockLost)
        }
    }

    /// The lock this request holds, taken out of its state (`None` on unlocked routes,
    /// without touching the state).
    fn take_lock(&self) -> Option<Box<HeldLock>> {
        if !self.locked.load(Ordering::Acquire) {
            return None;
        }
        self.state().lock.take()
    }

    /// The lock ended with the save that released it (or was lost): forget it, and let this
    /// process's next waiter ask.
    pub(crate) fn forget_lock(&self) {
        drop(self.take_lock());
    }

    /// Give the lock back, if the request still holds it.
    pub(crate) async fn unlock(&self) {
        if let Some(held) = self.take_lock() {
            release(self.context.backend(), &held).await;
        }
    }

    /// Give the lock back from a task of its own: a request that ends without a save
    /// (discarded, dropped, or panicked).
    pub(crate) fn unlock_in_background(&self) {
        if let Some(held) = self.take_lock() {
            spawn_release(Arc::clone(&self.context), held);
        }
    }
}

/// Send a held lock back from a task of its own (no runtime: it ends with its lease).
pub(crate) fn spawn_release(context: Arc<dyn crate::adapter::Context>, held: Box<HeldLock>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                release(context.backend(), &held).await;
            });
        }
        Err(_) => tracing::warn!(
            "a session lock was dropped outside a tokio runtime; it ends with its lease"
        ),
    }
}

async fn release(backend: &dyn crate::SessionBackend, held: &HeldLock) {
    if let Err(error) = backend.unlock(&held.id, &held.token).await {
        tracing::warn!(%error, "releasing a session lock failed; it ends with its lease");
    }
}
