//! Deleting expired rows: [`SqlBackend::delete_expired`], the periodic task
//! [`SqlBackend::spawn_cleanup`] starts, and the backend's
//! [`ExpiredDeletion`](sessionkit_core::cleanup::ExpiredDeletion).

use super::*;

impl<DB: SqlDatabase, S> SqlBackend<DB, S> {
    /// Delete every row expired by now, in batches of at most
    /// [`cleanup_batch_size`](SqlBackendBuilder::with_cleanup_batch_size) rows per statement;
    /// returns how many rows went. Rows that expire while it runs are left for the next run.
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        self.shared.delete_expired(&|| true).await
    }

    /// Run [`delete_expired`](Self::delete_expired) on a tokio task now and then every
    /// `period`, until the returned task is stopped or dropped. A failed run is logged as a
    /// `tracing` warning and the task goes on.
    ///
    /// Called outside a tokio runtime, or with a zero period, it is [`Error::Config`].
    pub fn spawn_cleanup(&self, period: Duration) -> Result<CleanupTask, Error> {
        sessionkit_core::cleanup::spawn_cleanup(Cleaner(Arc::clone(&self.shared)), period).map_err(
            |e| match e {
                Error::Config(message) => Error::Config(format!("{}: {message}", DB::LABEL)),
                other => other,
            },
        )
    }
}

impl<DB: SqlDatabase> Shared<DB> {
    /// Delete the rows expired by now, a batch per statement, asking `keep_going` between
    /// batches.
    async fn delete_expired(
        &self,
        keep_going: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<u64, Error> {
        let now = self.now_ms();
        let limit = i64::from(self.batch);
        let mut total = 0u64;
        loop {
            let deleted = match run!(self, |conn| DB::delete_expired(
                conn,
                &self.sql.delete_expired,
                now,
                limit
            )) {
                Ok(n) => n,
                Err(e) => return Err(self.error(e, "delete_expired", None).await),
            };
            total = total.saturating_add(deleted);
            if deleted < u64::from(self.batch) || !keep_going() {
                return Ok(total);
            }
        }
    }
}

/// What the periodic cleanup runs: the backend's shared state, whatever its serializer.
struct Cleaner<DB: SqlDatabase>(Arc<Shared<DB>>);

#[async_trait]
impl<DB: SqlDatabase> ExpiredDeletion for Cleaner<DB> {
    async fn delete_expired(
        &self,
        keep_going: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<u64, Error> {
        self.0.delete_expired(keep_going).await
    }
}

/// Expired rows stay until deleted: [`delete_expired`](SqlBackend::delete_expired) and
/// [`spawn_cleanup`](SqlBackend::spawn_cleanup) run this, and so can
/// [`sessionkit_core::cleanup::spawn_cleanup`] for a backend an application shares.
#[async_trait]
impl<DB: SqlDatabase, S: Serializer> ExpiredDeletion for SqlBackend<DB, S> {
    async fn delete_expired(
        &self,
        keep_going: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<u64, Error> {
        self.shared.delete_expired(keep_going).await
    }
}
