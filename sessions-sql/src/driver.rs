//! What differs between the databases: SQL text, DDL, how errors are told apart, and the
//! statements themselves on each driver's connection type. Private: users see only the
//! sealed [`SqlDatabase`](crate::SqlDatabase) trait.

use crate::table::TableName;
use std::future::Future;
use std::time::Duration;

/// The SQL of every operation for one table, built once at construction.
#[derive(Debug)]
pub struct Statements {
    pub read: String,
    pub exists: String,
    pub insert: String,
    pub update: String,
    /// The update of a save: only while the row holds the version the changes were applied to.
    pub apply: String,
    /// A live row becomes an end marker (version -1), with the `update` statement's parameters.
    pub end: String,
    /// A save that emptied the session ends its row, with the `apply` statement's parameters.
    pub end_version: String,
    pub delete: String,
    pub delete_expired: String,
    /// A user's sessions beyond the most recently used ones (all but one `id`, after an
    /// offset): what a per-user limit ends.
    pub over_limit: String,
    /// The ids of a user's live sessions.
    pub user_ids: String,
    /// A user's live sessions: id, data and version of each.
    pub user_sessions: String,
    /// Delete a user's live sessions.
    pub revoke_user: String,
    /// Delete a user's live sessions but one (`id <> ?`).
    pub revoke_user_except: String,
    /// Delete one live session of a user (`id = ?`).
    pub revoke_user_session: String,
    /// The statements of locked routes.
    pub locks: LockStatements,
}

/// A row's lock as stored: the holder's token and the end of its lease (Unix milliseconds),
/// both `None` when no one holds it; then the row's version and data, which tell whether a
/// locked save whose answer was lost (and was sent again) stored its own.
pub type LockState = (Option<String>, Option<i64>, i64, Vec<u8>);

/// The statements of locked routes (`SessionBackend::try_lock` and the others): the lock of a
/// session is two columns of its row, `lock_token` and `lock_until`.
#[derive(Debug)]
pub struct LockStatements {
    /// Take the lock of a row: when it is free, its lease ran out, or the token holds it.
    /// Bound: token, until, id, now, token.
    pub lock: String,
    /// Renew the lock of a row that the token holds with a lease not run out. Bound as
    /// [`lock`](Self::lock): token, until, id, now, token.
    pub renew: String,
    /// Give the lock of a row back if the token holds it. Bound: id, token.
    pub unlock: String,
    /// The holder and the lease's end of a row's lock, whatever the row holds. Bound: id.
    pub state: String,
    /// Whether any row (an end marker or an expired one included) is stored under an id.
    /// Bound: id.
    pub present: String,
    /// `apply`, fenced: only while the token holds an unexpired lock, which the same statement
    /// gives back. Bound: `apply`'s arguments, then token, now.
    pub apply: String,
    /// `end_version`, fenced and giving the lock back like [`apply`](Self::apply).
    pub end_version: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl LockStatements {
    /// The statements on table `t` (quoted), with `apply` and `end_version` the save's
    /// unlocked statements; `p(n)` is the placeholder of the `n`th bound value (1-based).
    fn new(t: &str, apply: &str, end_version: &str, p: impl Fn(usize) -> String) -> Self {
        // The save's statements bind 7 values: the token and "now" come after them.
        let fenced = |update: &str| {
            format!(
                "{} AND lock_token = {} AND lock_until > {}",
                update.replacen(
                    " WHERE ",
                    ", lock_token = NULL, lock_until = NULL WHERE ",
                    1
                ),
                p(8),
                p(9)
            )
        };
        LockStatements {
            lock: format!(
                "UPDATE {t} SET lock_token = {}, lock_until = {} WHERE id = {} \
                 AND (lock_token IS NULL OR lock_until <= {} OR lock_token = {})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            ),
            renew: format!(
                "UPDATE {t} SET lock_token = {}, lock_until = {} WHERE id = {} \
                 AND lock_until > {} AND lock_token = {}",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            ),
            unlock: format!(
                "UPDATE {t} SET lock_token = NULL, lock_until = NULL \
                 WHERE id = {} AND lock_token = {}",
                p(1),
                p(2)
            ),
            state: format!(
                "SELECT lock_token, lock_until, version, data FROM {t} WHERE id = {}",
                p(1)
            ),
            present: format!("SELECT 1 FROM {t} WHERE id = {}", p(1)),
            apply: fenced(apply),
            end_version: fenced(end_version),
        }
    }
}

/// What a failed statement means for the connection and for a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The connection is broken (or the server is closing it): never reuse it; the statement
    /// may be sent again on another connection.
    Connection,
    /// A lock conflict the database resolved by failing this statement (deadlock, busy,
    /// serialization failure); nothing was changed and the statement may be sent again.
    Transient,
    /// The sessions table does not exist.
    MissingTable,
    /// Anything else: reported as it is.
    Other,
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn classify_common(e: &sqlx::Error) -> Option<Failure> {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Some(Failure::Connection),
        sqlx::Error::Database(_) => None,
        _ => Some(Failure::Other),
    }
}

/// The database-specific half of [`SqlDatabase`](crate::SqlDatabase).
pub trait Driver: sqlx::Database {
    /// Short name for messages: `sqlite`, `postgres`, `mysql`.
    const LABEL: &'static str;

    fn statements(table: &TableName) -> Statements;

    /// The statements `migrate()` runs, in order; each is idempotent (`IF NOT EXISTS`).
    fn ddl(table: &TableName) -> Vec<String>;

    fn classify(e: &sqlx::Error) -> Failure;

    /// A pool for `url` that connects on first use, with this crate's pool settings.
    fn lazy_pool(url: &str, acquire_timeout: Duration) -> Result<sqlx::Pool<Self>, sqlx::Error>;

    /// The live row's data and version, handed to `decode` where the driver holds them (no
    /// copy).
    fn fetch_data<'c, T: Send + 'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        now: i64,
        decode: &'c (dyn Fn(&[u8], i64) -> T + Sync),
    ) -> impl Future<Output = Result<Option<T>, sqlx::Error>> + Send + 'c;

    /// Whether `sql` finds a row of `id`; `now` is bound after the id when given (a
    /// statement that asks for a live row).
    fn fetch_exists<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        now: Option<i64>,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'c;

    /// Insert a new row; `Ok(false)` when the id is taken (nothing was changed). `user` is
    /// the user the record is bound to (the `user_id` column).
    fn insert<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        data: &'c [u8],
        expires_at: Option<i64>,
        user: Option<&'c str>,
        accessed: i64,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'c;

    /// Update a live row; the number of rows matched. `accessed` is the session's last use
    /// (Unix seconds, the `accessed_at` column).
    #[allow(clippy::too_many_arguments)]
    fn update<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        data: &'c [u8],
        expires_at: Option<i64>,
        user: Option<&'c str>,
        accessed: i64,
        now: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Update a live row that still holds `version`; the number of rows matched. With
    /// `lock` (a token, and `sql` one of [`LockStatements`]' saves), only while that token
    /// holds the row's lock: the token and `now` are bound after the other arguments.
    #[allow(clippy::too_many_arguments)]
    fn apply<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        data: &'c [u8],
        expires_at: Option<i64>,
        user: Option<&'c str>,
        accessed: i64,
        now: i64,
        version: i64,
        lock: Option<&'c str>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Take the lock of the row of `id` for `token` until `until` (see
    /// [`LockStatements::lock`]); the number of rows matched.
    fn lock<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        token: &'c str,
        until: i64,
        now: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Give the lock of the row of `id` back if `token` holds it; the number of rows matched.
    fn unlock<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        token: &'c str,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// The row of `id`'s lock (its holder and the end of its lease), version and data: see
    /// [`LockState`]; `None` when no row is stored under it.
    fn fetch_lock<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
    ) -> impl Future<Output = Result<Option<LockState>, sqlx::Error>> + Send + 'c;

    /// The ids of the live rows bound to `user`.
    fn fetch_user_ids<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        user: &'c str,
        now: i64,
    ) -> impl Future<Output = Result<Vec<String>, sqlx::Error>> + Send + 'c;

    /// The live rows bound to `user`, each handed to `decode` as id, data and version.
    fn fetch_user_rows<'c, T: Send + 'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        user: &'c str,
        now: i64,
        decode: &'c (dyn Fn(&str, &[u8], i64) -> T + Sync),
    ) -> impl Future<Output = Result<Vec<T>, sqlx::Error>> + Send + 'c;

    /// Delete live rows bound to `user`: all of them, or (`sql` says which) all but `id` or
    /// only `id`; how many went. The arguments are bound in this order: user, id (when
    /// given), now.
    fn delete_of_user<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        user: &'c str,
        id: Option<&'c str>,
        now: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    fn delete<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Delete `user`'s live sessions but `keep` and the `kept` most recently used others; how
    /// many went.
    fn delete_over_limit<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        user: &'c str,
        keep: &'c str,
        now: i64,
        kept: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Delete at most `limit` rows expired at `now`; how many went.
    fn delete_expired<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        now: i64,
        limit: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Run one DDL statement (simple query protocol, nothing prepared or cached).
    fn execute_ddl<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;
}

/// A statement's arguments, built with room for all of them reserved first (sqlx's `bind`
/// grows its buffers value by value: several reallocations a statement). `bytes` is the
/// payload size; each value's length prefix or type slot is added here. Evaluates to
/// `Result<arguments, sqlx::Error>`: a value that fails to encode is `sqlx::Error::Encode`,
/// as `bind` would have reported it when the statement ran.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
macro_rules! arguments {
    ($bytes:expr; $($value:expr),+ $(,)?) => {{
        let count = [$(stringify!($value)),+].len();
        let mut args = <Self as sqlx::Database>::Arguments::default();
        sqlx::Arguments::reserve(&mut args, count, $bytes + 8 * count);
        let added: Result<(), sqlx::error::BoxDynError> = (|| {
            $(sqlx::Arguments::add(&mut args, $value)?;)+
            Ok(())
        })();
        added.map(|()| args).map_err(sqlx::Error::Encode)
    }};
}

/// The statements every database runs the same way; only the SQL text differs.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
macro_rules! common_statements {
    () => {
        fn fetch_data<'c, T: Send + 'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            now: i64,
            decode: &'c (dyn Fn(&[u8], i64) -> T + Sync),
        ) -> impl Future<Output = Result<Option<T>, sqlx::Error>> + Send + 'c {
            async move {
                let args = arguments!(id.len(); id, now)?;
                let row = sqlx::query_with(sql, args).fetch_optional(conn).await?;
                match row {
                    Some(row) => {
                        let version = sqlx::Row::try_get::<i64, _>(&row, 1)?;
                        Ok(Some(decode(sqlx::Row::try_get::<&[u8], _>(&row, 0)?, version)))
                    }
                    None => Ok(None),
                }
            }
        }

        fn fetch_exists<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            now: Option<i64>,
        ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'c {
            async move {
                let args = match now {
                    Some(now) => arguments!(id.len(); id, now)?,
                    None => arguments!(id.len(); id)?,
                };
                let row = sqlx::query_with(sql, args).fetch_optional(conn).await?;
                Ok(row.is_some())
            }
        }

        fn update<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            data: &'c [u8],
            expires_at: Option<i64>,
            user: Option<&'c str>,
            accessed: i64,
            now: i64,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let bytes = data.len() + id.len() + user.map_or(0, str::len);
                let args = arguments!(bytes; data, expires_at, user, accessed, id, now)?;
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected())
            }
        }

        fn apply<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            data: &'c [u8],
            expires_at: Option<i64>,
            user: Option<&'c str>,
            accessed: i64,
            now: i64,
            version: i64,
            lock: Option<&'c str>,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let bytes = data.len() + id.len() + user.map_or(0, str::len);
                let args = match lock {
                    Some(token) => arguments!(
                        bytes + token.len();
                        data, expires_at, user, accessed, id, version, now, token, now
                    )?,
                    None => arguments!(bytes; data, expires_at, user, accessed, id, version, now)?,
                };
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected())
            }
        }

        fn lock<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            token: &'c str,
            until: i64,
            now: i64,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let bytes = id.len() + 2 * token.len();
                let args = arguments!(bytes; token, until, id, now, token)?;
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected())
            }
        }

        fn unlock<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            token: &'c str,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let args = arguments!(id.len() + token.len(); id, token)?;
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected())
            }
        }

        fn fetch_lock<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
        ) -> impl Future<Output = Result<Option<LockState>, sqlx::Error>>
        + Send
        + 'c {
            async move {
                let args = arguments!(id.len(); id)?;
                let row = sqlx::query_with(sql, args).fetch_optional(conn).await?;
                match row {
                    // Unchecked, as in `fetch_user_ids`: MySQL's `lock_token` is `ascii_bin`.
                    Some(row) => Ok(Some((
                        sqlx::Row::try_get_unchecked::<Option<String>, _>(&row, 0)?,
                        sqlx::Row::try_get::<Option<i64>, _>(&row, 1)?,
                        sqlx::Row::try_get::<i64, _>(&row, 2)?,
                        sqlx::Row::try_get::<Vec<u8>, _>(&row, 3)?,
                    ))),
                    None => Ok(None),
                }
            }
        }

        fn fetch_user_ids<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            user: &'c str,
            now: i64,
        ) -> impl Future<Output = Result<Vec<String>, sqlx::Error>> + Send + 'c {
            async move {
                let args = arguments!(user.len(); user, now)?;
                let rows = sqlx::query_with(sql, args).fetch_all(conn).await?;
                // Unchecked: MySQL flags the `ascii_bin` id column BINARY, which sqlx's check
                // refuses for text; the decode still checks it is UTF-8.
                rows.iter()
                    .map(|row| sqlx::Row::try_get_unchecked::<String, _>(row, 0))
                    .collect()
            }
        }

        fn fetch_user_rows<'c, T: Send + 'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            user: &'c str,
            now: i64,
            decode: &'c (dyn Fn(&str, &[u8], i64) -> T + Sync),
        ) -> impl Future<Output = Result<Vec<T>, sqlx::Error>> + Send + 'c {
            async move {
                let args = arguments!(user.len(); user, now)?;
                let rows = sqlx::query_with(sql, args).fetch_all(conn).await?;
                let mut decoded = Vec::with_capacity(rows.len());
                for row in &rows {
                    // Unchecked, as in `fetch_user_ids`.
                    let id = sqlx::Row::try_get_unchecked::<&str, _>(row, 0)?;
                    let data = sqlx::Row::try_get::<&[u8], _>(row, 1)?;
                    let version = sqlx::Row::try_get::<i64, _>(row, 2)?;
                    decoded.push(decode(id, data, version));
                }
                Ok(decoded)
            }
        }

        fn delete_of_user<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            user: &'c str,
            id: Option<&'c str>,
            now: i64,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let args = match id {
                    Some(id) => arguments!(user.len() + id.len(); user, id, now)?,
                    None => arguments!(user.len(); user, now)?,
                };
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected())
            }
        }

        fn delete<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let args = arguments!(id.len(); id)?;
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected())
            }
        }

        fn delete_over_limit<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            user: &'c str,
            keep: &'c str,
            now: i64,
            kept: i64,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let args = arguments!(user.len() + keep.len(); user, keep, now, kept)?;
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected())
            }
        }

        fn delete_expired<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            now: i64,
            limit: i64,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let done = sqlx::query(sql).bind(now).bind(limit).execute(conn).await?;
                Ok(done.rows_affected())
            }
        }

        fn execute_ddl<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
        ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c {
            // Through the Executor trait: its boxed future is `Send` for any lifetime.
            let done = sqlx::Executor::execute(conn, sqlx::raw_sql(sql));
            async move {
                done.await?;
                Ok(())
            }
        }
    };
}

/// `INSERT ... ON CONFLICT (id) DO NOTHING`: zero rows affected means the id is taken.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! insert_on_conflict_do_nothing {
    () => {
        fn insert<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            data: &'c [u8],
            expires_at: Option<i64>,
            user: Option<&'c str>,
            accessed: i64,
        ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'c {
            async move {
                let bytes = id.len() + data.len() + user.map_or(0, str::len);
                let args = arguments!(bytes; id, data, expires_at, user, accessed)?;
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

/// The live-row condition every read, exists and update carries; `p` is the placeholder of
/// the bound "now" (Unix milliseconds computed by the application, not the database clock).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn live(p: &str) -> String {
    format!("(expires_at IS NULL OR expires_at > {p})")
}

#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
mod postgres;

#[cfg(feature = "mysql")]
mod mysql;
