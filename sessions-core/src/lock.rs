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
use crate::store::{OwnedTurn, Turns};
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
    _turn: OwnedTurn,
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
        let Ok(turn) = tokio::time::timeout(locking.wait, locking.queue.take_owned(&id)).await
        else {
            return Err(timed_out());
        };
        let backend = self.inner.context.backend();
        let mut taking = Taking {
            inner: &self.inner,
            held: Some(HeldLock {
                id,
                token: crate::generate_id(),
                lease: locking.lease,
                _turn: turn,
            }),
        };
        let mut pause = FIRST_PAUSE;
        loop {
            let Some(held) = taking.held.as_ref() else {
                return Err(timed_out());
            };
            if backend.try_lock(&held.id, &held.token, held.lease).await? {
                break;
            }
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
    let mut random = [0u8; 8];
    if getrandom::fill(&mut random).is_err() {
        return pause;
    }
    let half = pause / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(u64::from_le_bytes(random) % spread)
}

impl Inner {
    /// The token of the lock this request holds on `id`, if it holds one.
    pub(crate) fn lock_on(&self, id: &str) -> Option<String> {
        if !self.locked.load(Ordering::Acquire) {
            return None;
        }
        let state = self.state();
        state
            .lock
            .as_ref()
            .filter(|held| *held.id == *id)
            .map(|held| held.token.clone())
    }

    /// Before a step the backend does not fence (a login moving the session, a `delete()`
    /// ending it): check that the request still holds the lock of `id`, renewing its lease,
    /// so the step runs within a fresh lease. [`Error::LockLost`] when another request took
    /// it since.
    pub(crate) async fn renew_lock(&self, id: &str) -> Result<(), Error> {
        let held = {
            if !self.locked.load(Ordering::Acquire) {
                return Ok(());
            }
            let state = self.state();
            match state.lock.as_ref().filter(|held| *held.id == *id) {
                Some(held) => (Arc::clone(&held.id), held.token.clone(), held.lease),
                None => return Ok(()),
            }
        };
        let (id, token, lease) = held;
        if self
            .context
            .backend()
            .renew_lock(&id, &token, lease)
            .await?
        {
            Ok(())
        } else {
            // Not ours any more: nothing to give back.
            self.forget_lock();
            Err(Error::LockLost)
        }
    }

    /// The lock ended with the save that released it (or was lost): forget it, and let this
    /// process's next waiter ask.
    pub(crate) fn forget_lock(&self) {
        let held = self.state().lock.take();
        drop(held);
    }

    /// Give the lock back, if the request still holds it.
    pub(crate) async fn unlock(&self) {
        if !self.locked.load(Ordering::Acquire) {
            return;
        }
        let held = self.state().lock.take();
        if let Some(held) = held {
            release(self.context.backend(), &held).await;
        }
    }

    /// Give the lock back from a task of its own: a request that ends without a save
    /// (discarded, dropped, or panicked).
    pub(crate) fn unlock_in_background(&self) {
        if !self.locked.load(Ordering::Acquire) {
            return;
        }
        let held = self.state().lock.take();
        if let Some(held) = held {
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
