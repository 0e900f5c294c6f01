//! [`SqlBackend::migrate`]: the table and its indexes, created when missing.

use super::*;

impl<DB: SqlDatabase, S> SqlBackend<DB, S> {
    /// Create the sessions table and its indexes when they are missing; otherwise do
    /// nothing. Safe to call on every start, from several instances at once. The statements
    /// are in the [crate docs](crate#schema).
    pub async fn migrate(&self) -> Result<(), Error> {
        let shared = &*self.shared;
        for sql in DB::ddl(&shared.table) {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match run!(shared, |conn| DB::execute_ddl(conn, &sql)) {
                    Ok(()) => break,
                    // Two instances creating the same table at once: PostgreSQL can fail the
                    // loser on its catalog's unique index even with IF NOT EXISTS. Once the
                    // winner is done, the statement finds the table there.
                    Err(OpError::Statement(_, e)) if attempt < 3 && creation_race(&e) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        return Err(shared
                            .error(e, "migrate (create the table and its indexes)", None)
                            .await);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `e` is what PostgreSQL reports to the loser of two concurrent
/// `CREATE ... IF NOT EXISTS` of the same object.
fn creation_race(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|db| {
        db.is_unique_violation() || matches!(db.code().as_deref(), Some("42P07" | "42710"))
    })
}
