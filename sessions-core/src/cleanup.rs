//! Deleting expired records, for stores that do not expire them on their own (an SQL table, a
//! directory of files): the [`ExpiredDeletion`] capability, and a task that runs it now and
//! then (feature `cleanup`).
//!
//! Redis and the memory backend expire records themselves and need neither. A store whose
//! records stay until deleted implements [`ExpiredDeletion`] beside
//! [`SessionBackend`](crate::SessionBackend), and the application starts the task once:
//!
//! ```
//! use sessionkit_core::cleanup::{ExpiredDeletion, spawn_cleanup};
//! use sessionkit_core::{Error, async_trait};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! /// A store whose expired records are deleted ten at a time.
//! #[derive(Default)]
//! struct Store {
//!     expired: AtomicU64,
//! }
//!
//! #[async_trait]
//! impl ExpiredDeletion for Store {
//!     async fn delete_expired(&self, keep_going: &(dyn Fn() -> bool + Send + Sync)) -> Result<u64, Error> {
//!         let mut deleted = 0;
//!         loop {
//!             let batch = self.expired.load(Ordering::SeqCst).min(10);
//!             self.expired.fetch_sub(batch, Ordering::SeqCst);
//!             deleted += batch;
//!             if batch < 10 || !keep_going() {
//!                 return Ok(deleted);
//!             }
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = Arc::new(Store::default());
//! store.expired.store(25, Ordering::SeqCst);
//! let task = spawn_cleanup(Arc::clone(&store), Duration::from_secs(600))?;
//! // ... the application runs; on shutdown:
//! # tokio::task::yield_now().await;
//! assert_eq!(task.stop().await, 25, "the first run deletes what had expired");
//! # Ok::<(), Error>(()) }).unwrap();
//! ```

use crate::Error;
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Deleting the records that have expired, for a store that keeps them until deleted.
#[async_trait]
pub trait ExpiredDeletion: Send + Sync + 'static {
    /// Delete the records expired by now and answer how many went. A store that deletes in
    /// batches (to keep each statement and its locks short) calls `keep_going` between
    /// batches and stops early when it answers `false`: the cleanup task is being stopped.
    /// Records that expire while it runs may be left for the next run.
    async fn delete_expired(
        &self,
        keep_going: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<u64, Error>;
}

#[async_trait]
impl<B: ExpiredDeletion + ?Sized> ExpiredDeletion for Arc<B> {
    async fn delete_expired(
        &self,
        keep_going: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<u64, Error> {
        (**self).delete_expired(keep_going).await
    }
}

/// Run `backend`'s [`delete_expired`](ExpiredDeletion::delete_expired) on a tokio task now,
/// then every `period`, until the returned [`CleanupTask`] is stopped or dropped. A failed
/// run is logged as a `tracing` warning, and the task goes on with the next period.
///
/// # Errors
///
/// [`Error::Config`] when called outside a tokio runtime, or with a zero period.
pub fn spawn_cleanup<B: ExpiredDeletion>(
    backend: B,
    period: Duration,
) -> Result<CleanupTask, Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::Config("spawn_cleanup must be called inside a tokio runtime".to_owned())
    })?;
    if period.is_zero() {
        return Err(Error::Config(
            "the cleanup period must not be zero".to_owned(),
        ));
    }
    let (stop, mut stopped) = watch::channel(false);
    let task = runtime.spawn(async move {
        let mut total = 0u64;
        loop {
            let keep_going = {
                let stopped = stopped.clone();
                move || !*stopped.borrow()
            };
            if !keep_going() {
                break;
            }
            match backend.delete_expired(&keep_going).await {
                Ok(deleted) => total = total.saturating_add(deleted),
                Err(error) => tracing::warn!(
                    %error,
                    "deleting expired sessions failed; trying again next period"
                ),
            }
            // A stop (or the task value dropped) ends the wait at once, and the task with it.
            if tokio::time::timeout(period, stopped.changed())
                .await
                .is_ok()
            {
                break;
            }
        }
        total
    });
    Ok(CleanupTask {
        stop: Some(stop),
        task,
    })
}

/// A running cleanup, from [`spawn_cleanup`].
///
/// [`stop`](CleanupTask::stop) ends it and waits until it has ended; dropping the value also
/// ends it, without waiting. Either way a batch that is running finishes first, and no
/// further batch starts.
#[must_use = "dropping a CleanupTask stops the cleanup at once"]
pub struct CleanupTask {
    stop: Option<watch::Sender<bool>>,
    task: JoinHandle<u64>,
}

impl CleanupTask {
    /// Stop the task and wait for it to end. Returns how many expired records it deleted over
    /// its whole life.
    pub async fn stop(mut self) -> u64 {
        self.signal_stop();
        // The task never panics; a join error means the runtime is shutting down.
        (&mut self.task).await.unwrap_or(0)
    }

    /// Whether the task has ended (it ends only when stopped, or when its runtime shuts down).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may have ended already (its runtime shut down): nothing to tell then.
            let _ = stop.send(true);
        }
    }
}

impl Drop for CleanupTask {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

impl fmt::Debug for CleanupTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CleanupTask")
            .field("finished", &self.task.is_finished())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// Expired records to delete, in batches of `batch`; counts the runs.
    struct Backlog {
        expired: AtomicU64,
        batch: u64,
        runs: AtomicUsize,
        fail: Mutex<bool>,
    }

    impl Backlog {
        fn new(expired: u64, batch: u64) -> Arc<Self> {
            Arc::new(Backlog {
                expired: AtomicU64::new(expired),
                batch,
                runs: AtomicUsize::new(0),
                fail: Mutex::new(false),
            })
        }
    }

    #[async_trait]
    impl ExpiredDeletion for Backlog {
        async fn delete_expired(
            &self,
            keep_going: &(dyn Fn() -> bool + Send + Sync),
        ) -> Result<u64, Error> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if *self.fail.lock().unwrap() {
                return Err(Error::backend("the store is down"));
            }
            let mut deleted = 0;
            loop {
                let batch = self.expired.load(Ordering::SeqCst).min(self.batch);
                self.expired.fetch_sub(batch, Ordering::SeqCst);
                deleted += batch;
                if batch < self.batch || !keep_going() {
                    return Ok(deleted);
                }
                tokio::task::yield_now().await;
            }
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    #[test]
    fn the_task_runs_at_once_then_every_period_and_reports_what_it_deleted() {
        runtime().block_on(async {
            let backlog = Backlog::new(25, 10);
            let task = spawn_cleanup(Arc::clone(&backlog), Duration::from_secs(60)).unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(backlog.runs.load(Ordering::SeqCst), 1);
            backlog.expired.store(7, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert_eq!(backlog.runs.load(Ordering::SeqCst), 2);
            // A failed run is logged, and the next period tries again.
            *backlog.fail.lock().unwrap() = true;
            tokio::time::sleep(Duration::from_secs(60)).await;
            *backlog.fail.lock().unwrap() = false;
            backlog.expired.store(3, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert_eq!(backlog.runs.load(Ordering::SeqCst), 4);
            assert_eq!(task.stop().await, 25 + 7 + 3);
        });
    }

    #[test]
    fn a_stop_ends_the_wait_and_no_batch_starts_after_it() {
        runtime().block_on(async {
            let backlog = Backlog::new(0, 10);
            let task = spawn_cleanup(Arc::clone(&backlog), Duration::from_secs(3600)).unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            backlog.expired.store(1_000, Ordering::SeqCst);
            // Stopped during the hour's wait: it ends without another run.
            assert_eq!(task.stop().await, 0);
            assert_eq!(backlog.runs.load(Ordering::SeqCst), 1);
            assert_eq!(backlog.expired.load(Ordering::SeqCst), 1_000);
        });
    }

    #[test]
    fn dropping_the_task_value_stops_it() {
        runtime().block_on(async {
            let backlog = Backlog::new(0, 10);
            let task = spawn_cleanup(Arc::clone(&backlog), Duration::from_secs(1)).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(task);
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert_eq!(
                backlog.runs.load(Ordering::SeqCst),
                1,
                "it ran on after the drop"
            );
        });
    }

    #[test]
    fn outside_a_runtime_or_with_a_zero_period_it_is_a_configuration_error() {
        let backlog = Backlog::new(0, 10);
        assert!(matches!(
            spawn_cleanup(Arc::clone(&backlog), Duration::from_secs(1)),
            Err(Error::Config(_))
        ));
        runtime().block_on(async {
            assert!(matches!(
                spawn_cleanup(backlog, Duration::ZERO),
                Err(Error::Config(_))
            ));
        });
    }
}
