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
    /// The delete of a save that emptied the session, on the same condition.
    pub apply_delete: String,
    pub delete: String,
    pub delete_expired: String,
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

    /// The statements `migrate()` runs, in order; each is idempotent, or fails only as
    /// [`is_duplicate_column`](Driver::is_duplicate_column) or
    /// [`is_duplicate_index`](Driver::is_duplicate_index) says (a column or index added
    /// before).
    fn ddl(table: &TableName) -> Vec<String>;

    fn classify(e: &sqlx::Error) -> Failure;

    /// Whether `e` says a column to add is there already: the migration of a table made by
    /// this version needs nothing then.
    fn is_duplicate_column(e: &sqlx::Error) -> bool;

    /// Whether `e` says an index to create is there already (on databases without
    /// `CREATE INDEX IF NOT EXISTS`).
    fn is_duplicate_index(e: &sqlx::Error) -> bool;

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

    fn fetch_exists<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        now: i64,
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
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'c;

    /// Update a live row; the number of rows matched.
    fn update<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        data: &'c [u8],
        expires_at: Option<i64>,
        user: Option<&'c str>,
        now: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Update a live row that still holds `version`; the number of rows matched.
    #[allow(clippy::too_many_arguments)]
    fn apply<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        data: &'c [u8],
        expires_at: Option<i64>,
        user: Option<&'c str>,
        now: i64,
        version: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

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

    /// Delete the row `id` if it still holds `version`; how many went.
    fn delete_version<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
        version: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    fn delete<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        id: &'c str,
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
            now: i64,
        ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'c {
            async move {
                let args = arguments!(id.len(); id, now)?;
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
            now: i64,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let bytes = data.len() + id.len() + user.map_or(0, str::len);
                let args = arguments!(bytes; data, expires_at, user, id, now)?;
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
            now: i64,
            version: i64,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let bytes = data.len() + id.len() + user.map_or(0, str::len);
                let args = arguments!(bytes; data, expires_at, user, id, version, now)?;
                let done = sqlx::query_with(sql, args).execute(conn).await?;
                Ok(done.rows_affected())
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

        fn delete_version<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            version: i64,
        ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let args = arguments!(id.len(); id, version)?;
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
        ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'c {
            async move {
                let bytes = id.len() + data.len() + user.map_or(0, str::len);
                let args = arguments!(bytes; id, data, expires_at, user)?;
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
mod sqlite {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use std::str::FromStr;

    impl Driver for sqlx::Sqlite {
        const LABEL: &'static str = "sqlite";

        fn statements(table: &TableName) -> Statements {
            let t = table.quoted('"');
            Statements {
                read: format!(
                    "SELECT data, version FROM {t} WHERE id = ?1 AND {}",
                    live("?2")
                ),
                exists: format!("SELECT 1 FROM {t} WHERE id = ?1 AND {}", live("?2")),
                insert: format!(
                    "INSERT INTO {t} (id, data, expires_at, user_id) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                update: format!(
                    "UPDATE {t} SET data = ?1, expires_at = ?2, user_id = ?3, \
                     version = version + 1 WHERE id = ?4 AND {}",
                    live("?5")
                ),
                apply: format!(
                    "UPDATE {t} SET data = ?1, expires_at = ?2, user_id = ?3, \
                     version = version + 1 WHERE id = ?4 AND version = ?5 AND {}",
                    live("?6")
                ),
                apply_delete: format!("DELETE FROM {t} WHERE id = ?1 AND version = ?2"),
                delete: format!("DELETE FROM {t} WHERE id = ?1"),
                delete_expired: format!(
                    "DELETE FROM {t} WHERE id IN \
                     (SELECT id FROM {t} WHERE expires_at <= ?1 LIMIT ?2)"
                ),
                user_ids: format!("SELECT id FROM {t} WHERE user_id = ?1 AND {}", live("?2")),
                user_sessions: format!(
                    "SELECT id, data, version FROM {t} WHERE user_id = ?1 AND {}",
                    live("?2")
                ),
                revoke_user: format!("DELETE FROM {t} WHERE user_id = ?1 AND {}", live("?2")),
                revoke_user_except: format!(
                    "DELETE FROM {t} WHERE user_id = ?1 AND id <> ?2 AND {}",
                    live("?3")
                ),
                revoke_user_session: format!(
                    "DELETE FROM {t} WHERE user_id = ?1 AND id = ?2 AND {}",
                    live("?3")
                ),
            }
        }

        fn ddl(table: &TableName) -> Vec<String> {
            let t = table.quoted('"');
            vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     id TEXT PRIMARY KEY NOT NULL, \
                     data BLOB NOT NULL, \
                     expires_at INTEGER, \
                     version INTEGER NOT NULL DEFAULT 0, \
                     user_id TEXT) WITHOUT ROWID"
                ),
                // Tables made before saves merged their changes have no version yet.
                format!("ALTER TABLE {t} ADD COLUMN version INTEGER NOT NULL DEFAULT 0"),
                // Tables made before sessions were bound to users have no user_id yet.
                format!("ALTER TABLE {t} ADD COLUMN user_id TEXT"),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON \"{}\" (expires_at)",
                    table.quoted_index_in_schema('"'),
                    table.name()
                ),
                // Partial: the sessions bound to no user (most, often) take no room in it.
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON \"{}\" (user_id) WHERE user_id IS NOT NULL",
                    table.quoted_user_index_in_schema('"'),
                    table.name()
                ),
            ]
        }

        fn classify(e: &sqlx::Error) -> Failure {
            if let Some(kind) = classify_common(e) {
                return kind;
            }
            let Some(db) = e.as_database_error() else {
                return Failure::Other;
            };
            // Primary result codes: SQLITE_BUSY = 5, SQLITE_LOCKED = 6 (extended codes keep
            // the primary code in their low byte).
            let primary = db
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .map(|code| code & 0xff);
            match primary {
                Some(5 | 6) => Failure::Transient,
                _ if db.message().starts_with("no such table") => Failure::MissingTable,
                _ => Failure::Other,
            }
        }

        fn is_duplicate_column(e: &sqlx::Error) -> bool {
            e.as_database_error()
                .is_some_and(|db| db.message().starts_with("duplicate column name"))
        }

        fn is_duplicate_index(_: &sqlx::Error) -> bool {
            // `CREATE INDEX IF NOT EXISTS`.
            false
        }

        fn lazy_pool(
            url: &str,
            acquire_timeout: Duration,
        ) -> Result<sqlx::Pool<Self>, sqlx::Error> {
            let mut options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
            let mut pool = SqlitePoolOptions::new().acquire_timeout(acquire_timeout);
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if !in_memory {
                // A session store wants many small writes: the write-ahead log lets readers
                // run beside the writer, and NORMAL syncs at checkpoints instead of on every
                // commit (still safe against an application crash). The defaults (rollback
                // journal, FULL) fsync several times a commit.
                options = options
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
            }
            if in_memory {
                // An in-memory database lives as long as one of its connections: keep one
                // open for the pool's whole life.
                pool = pool
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
            Ok(pool.connect_lazy_with(options))
        }

        common_statements!();
        insert_on_conflict_do_nothing!();
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sqlx::postgres::PgPoolOptions;

    impl Driver for sqlx::Postgres {
        const LABEL: &'static str = "postgres";

        fn statements(table: &TableName) -> Statements {
            let t = table.quoted('"');
            Statements {
                read: format!(
                    "SELECT data, version FROM {t} WHERE id = $1 AND {}",
                    live("$2")
                ),
                exists: format!("SELECT 1 FROM {t} WHERE id = $1 AND {}", live("$2")),
                insert: format!(
                    "INSERT INTO {t} (id, data, expires_at, user_id) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                update: format!(
                    "UPDATE {t} SET data = $1, expires_at = $2, user_id = $3, \
                     version = version + 1 WHERE id = $4 AND {}",
                    live("$5")
                ),
                apply: format!(
                    "UPDATE {t} SET data = $1, expires_at = $2, user_id = $3, \
                     version = version + 1 WHERE id = $4 AND version = $5 AND {}",
                    live("$6")
                ),
                apply_delete: format!("DELETE FROM {t} WHERE id = $1 AND version = $2"),
                delete: format!("DELETE FROM {t} WHERE id = $1"),
                // SKIP LOCKED: a second cleaner (another app instance) takes other rows
                // instead of waiting for these.
                delete_expired: format!(
                    "DELETE FROM {t} WHERE id IN \
                     (SELECT id FROM {t} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
                ),
                user_ids: format!("SELECT id FROM {t} WHERE user_id = $1 AND {}", live("$2")),
                user_sessions: format!(
                    "SELECT id, data, version FROM {t} WHERE user_id = $1 AND {}",
                    live("$2")
                ),
                revoke_user: format!("DELETE FROM {t} WHERE user_id = $1 AND {}", live("$2")),
                revoke_user_except: format!(
                    "DELETE FROM {t} WHERE user_id = $1 AND id <> $2 AND {}",
                    live("$3")
                ),
                revoke_user_session: format!(
                    "DELETE FROM {t} WHERE user_id = $1 AND id = $2 AND {}",
                    live("$3")
                ),
            }
        }

        fn ddl(table: &TableName) -> Vec<String> {
            let t = table.quoted('"');
            vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     id TEXT PRIMARY KEY, \
                     data BYTEA NOT NULL, \
                     expires_at BIGINT, \
                     version BIGINT NOT NULL DEFAULT 0, \
                     user_id TEXT)"
                ),
                // Tables made before saves merged their changes have no version yet.
                format!(
                    "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0"
                ),
                // Tables made before sessions were bound to users have no user_id yet.
                format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS user_id TEXT"),
                format!(
                    "CREATE INDEX IF NOT EXISTS \"{}\" ON {t} (expires_at)",
                    table.index_name()
                ),
                // Partial: the sessions bound to no user (most, often) take no room in it.
                format!(
                    "CREATE INDEX IF NOT EXISTS \"{}\" ON {t} (user_id) WHERE user_id IS NOT NULL",
                    table.user_index_name()
                ),
            ]
        }

        fn classify(e: &sqlx::Error) -> Failure {
            if let Some(kind) = classify_common(e) {
                return kind;
            }
            let code = e.as_database_error().and_then(|db| db.code());
            match code.as_deref() {
                // deadlock_detected, serialization_failure, lock_not_available
                Some("40P01" | "40001" | "55P03") => Failure::Transient,
                Some("42P01") => Failure::MissingTable,
                // admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions
                Some(c) if c.starts_with("57P") || c.starts_with("08") => Failure::Connection,
                _ => Failure::Other,
            }
        }

        fn is_duplicate_column(e: &sqlx::Error) -> bool {
            // duplicate_column
            e.as_database_error().and_then(|db| db.code()).as_deref() == Some("42701")
        }

        fn is_duplicate_index(_: &sqlx::Error) -> bool {
            // `CREATE INDEX IF NOT EXISTS`.
            false
        }

        fn lazy_pool(
            url: &str,
            acquire_timeout: Duration,
        ) -> Result<sqlx::Pool<Self>, sqlx::Error> {
            PgPoolOptions::new()
                .acquire_timeout(acquire_timeout)
                .connect_lazy(url)
        }

        common_statements!();
        insert_on_conflict_do_nothing!();
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use sqlx::mysql::{MySqlDatabaseError, MySqlPoolOptions};

    fn number(e: &sqlx::Error) -> Option<u16> {
        e.as_database_error()
            .and_then(|db| db.try_downcast_ref::<MySqlDatabaseError>())
            .map(MySqlDatabaseError::number)
    }

    impl Driver for sqlx::MySql {
        const LABEL: &'static str = "mysql";

        fn statements(table: &TableName) -> Statements {
            let t = table.quoted('`');
            Statements {
                read: format!(
                    "SELECT data, version FROM {t} WHERE id = ? AND {}",
                    live("?")
                ),
                exists: format!("SELECT 1 FROM {t} WHERE id = ? AND {}", live("?")),
                // A plain INSERT: a taken id fails with ER_DUP_ENTRY, told apart below.
                // (INSERT IGNORE would also turn other errors, truncation included, into
                // warnings.)
                insert: format!(
                    "INSERT INTO {t} (id, data, expires_at, user_id) VALUES (?, ?, ?, ?)"
                ),
                // sqlx connects with CLIENT_FOUND_ROWS, so the row count is the rows matched,
                // also when the new values equal the old ones.
                update: format!(
                    "UPDATE {t} SET data = ?, expires_at = ?, user_id = ?, \
                     version = version + 1 WHERE id = ? AND {}",
                    live("?")
                ),
                apply: format!(
                    "UPDATE {t} SET data = ?, expires_at = ?, user_id = ?, \
                     version = version + 1 WHERE id = ? AND version = ? AND {}",
                    live("?")
                ),
                apply_delete: format!("DELETE FROM {t} WHERE id = ? AND version = ?"),
                delete: format!("DELETE FROM {t} WHERE id = ?"),
                delete_expired: format!(
                    "DELETE FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
                ),
                user_ids: format!("SELECT id FROM {t} WHERE user_id = ? AND {}", live("?")),
                user_sessions: format!(
                    "SELECT id, data, version FROM {t} WHERE user_id = ? AND {}",
                    live("?")
                ),
                revoke_user: format!("DELETE FROM {t} WHERE user_id = ? AND {}", live("?")),
                revoke_user_except: format!(
                    "DELETE FROM {t} WHERE user_id = ? AND id <> ? AND {}",
                    live("?")
                ),
                revoke_user_session: format!(
                    "DELETE FROM {t} WHERE user_id = ? AND id = ? AND {}",
                    live("?")
                ),
            }
        }

        fn ddl(table: &TableName) -> Vec<String> {
            let t = table.quoted('`');
            vec![
                // user_id is VARBINARY: users compare byte for byte (a `_bin` collation of a
                // character set still ignores trailing spaces), and 255 bytes, the longest
                // user, fit any InnoDB index whatever the table's row format.
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, \
                     data LONGBLOB NOT NULL, \
                     expires_at BIGINT NULL, \
                     version BIGINT NOT NULL DEFAULT 0, \
                     user_id VARBINARY(255) NULL, \
                     INDEX `{}` (expires_at), \
                     INDEX `{}` (user_id))",
                    table.index_name(),
                    table.user_index_name()
                ),
                // Tables made before saves merged their changes have no version yet. (MySQL
                // has no `ADD COLUMN IF NOT EXISTS`: a column already there is
                // ER_DUP_FIELDNAME, which `migrate` takes as done.)
                format!("ALTER TABLE {t} ADD COLUMN version BIGINT NOT NULL DEFAULT 0"),
                // Tables made before sessions were bound to users have no user_id yet; nor
                // `CREATE INDEX IF NOT EXISTS`: an index already there is ER_DUP_KEYNAME.
                format!("ALTER TABLE {t} ADD COLUMN user_id VARBINARY(255) NULL"),
                format!(
                    "CREATE INDEX `{}` ON {t} (user_id)",
                    table.user_index_name()
                ),
            ]
        }

        fn classify(e: &sqlx::Error) -> Failure {
            if let Some(kind) = classify_common(e) {
                return kind;
            }
            match number(e) {
                // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
                Some(1213 | 1205) => Failure::Transient,
                // ER_NO_SUCH_TABLE
                Some(1146) => Failure::MissingTable,
                // ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT
                Some(1053 | 1927 | 4031) => Failure::Connection,
                _ => Failure::Other,
            }
        }

        fn is_duplicate_column(e: &sqlx::Error) -> bool {
            // ER_DUP_FIELDNAME
            number(e) == Some(1060)
        }

        fn is_duplicate_index(e: &sqlx::Error) -> bool {
            // ER_DUP_KEYNAME
            number(e) == Some(1061)
        }

        fn lazy_pool(
            url: &str,
            acquire_timeout: Duration,
        ) -> Result<sqlx::Pool<Self>, sqlx::Error> {
            MySqlPoolOptions::new()
                .acquire_timeout(acquire_timeout)
                .connect_lazy(url)
        }

        async fn insert<'c>(
            conn: &'c mut Self::Connection,
            sql: &'c str,
            id: &'c str,
            data: &'c [u8],
            expires_at: Option<i64>,
            user: Option<&'c str>,
        ) -> Result<bool, sqlx::Error> {
            let bytes = id.len() + data.len() + user.map_or(0, str::len);
            let args = arguments!(bytes; id, data, expires_at, user)?;
            let result = sqlx::query_with(sql, args).execute(conn).await;
            match result {
                Ok(_) => Ok(true),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
                Err(e) => Err(e),
            }
        }

        common_statements!();
    }
}
