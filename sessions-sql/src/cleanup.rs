//! The periodic cleanup task and the value that stops it.

use std::fmt;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::task::JoinHandle;

/// A running periodic cleanup, from
/// [`SqlBackend::spawn_cleanup`](crate::SqlBackend::spawn_cleanup).
///
/// [`stop`](CleanupTask::stop) ends it and waits until it has ended; dropping the task value also
/// ends it, without waiting. Either way a statement that is running finishes first (so no
/// connection is left mid-statement), and no further batch starts.
#[must_use = "dropping a CleanupTask stops the cleanup at once"]
pub struct CleanupTask {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<u64>,
}

impl CleanupTask {
    /// Stop the task and wait for it to end. Returns how many expired rows it deleted over its
    /// whole life.
    pub async fn stop(mut self) -> u64 {
        drop(self.stop.take());
        // The task never panics; a join error means the runtime is shutting down.
        (&mut self.task).await.unwrap_or(0)
    }

    /// Whether the task has ended (it ends only when stopped, or when its runtime shuts down).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for CleanupTask {
    fn drop(&mut self) {
        // Dropping the sender is the stop signal; the task notices between statements.
        drop(self.stop.take());
    }
}

impl fmt::Debug for CleanupTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CleanupTask")
            .field("finished", &self.task.is_finished())
            .finish()
    }
}

/// The stop signal as the task sees it. Once it has seen the stop it remembers it and never
/// polls the channel again (a completed oneshot must not be polled).
pub(crate) struct StopSignal {
    rx: oneshot::Receiver<()>,
    stopped: bool,
}

impl StopSignal {
    /// Whether a stop was asked for (or the task value dropped).
    pub(crate) fn stopped(&mut self) -> bool {
        if !self.stopped {
            self.stopped = !matches!(self.rx.try_recv(), Err(TryRecvError::Empty));
        }
        self.stopped
    }

    /// Wait `period`; `true` when a stop came first (or had come already).
    pub(crate) async fn wait(&mut self, period: Duration) -> bool {
        if !self.stopped {
            self.stopped = tokio::time::timeout(period, &mut self.rx).await.is_ok();
        }
        self.stopped
    }
}

impl CleanupTask {
    pub(crate) fn new(stop: oneshot::Sender<()>, task: JoinHandle<u64>) -> Self {
        CleanupTask {
            stop: Some(stop),
            task,
        }
    }
}

/// A stop signal and the sender that fires it (by being dropped).
pub(crate) fn signal() -> (oneshot::Sender<()>, StopSignal) {
    let (tx, rx) = oneshot::channel();
    (tx, StopSignal { rx, stopped: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_seen_stop_is_remembered_and_the_channel_never_polled_again() {
        let (tx, mut sig) = signal();
        assert!(!sig.stopped());
        assert!(!sig.wait(Duration::from_millis(5)).await);
        drop(tx);
        assert!(sig.stopped());
        // Polling the completed channel again would panic.
        assert!(sig.wait(Duration::from_millis(5)).await);
        assert!(sig.stopped());

        let (tx, mut sig) = signal();
        let _ = tx.send(());
        assert!(sig.wait(Duration::from_secs(5)).await);
        assert!(sig.stopped());
        assert!(sig.wait(Duration::from_secs(5)).await);
    }
}
