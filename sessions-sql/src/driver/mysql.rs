//! The MySQL and MariaDB driver: its statements, and how its rows and errors are read.

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
        let apply = format!(
            "UPDATE {t} SET data = ?, expires_at = ?, user_id = ?, accessed_at = ?, \
             version = version + 1 WHERE id = ? AND version = ? AND {}",
            live("?")
        );
        let end_version = format!(
            "UPDATE {t} SET data = ?, expires_at = ?, user_id = ?, accessed_at = ?, \
             version = -1 WHERE id = ? AND version = ? AND {}",
            live("?")
        );
        let locks = LockStatements::new(&t, &apply, &end_version, |_| "?".to_owned());
        Statements {
            read: format!(
                "SELECT data, version FROM {t} WHERE id = ? AND {}",
                live("?")
            ),
            exists: format!(
                "SELECT 1 FROM {t} WHERE id = ? AND version >= 0 AND {}",
                live("?")
            ),
            // A plain INSERT: a taken id fails with ER_DUP_ENTRY, told apart below.
            // (INSERT IGNORE would also turn other errors, truncation included, into
            // warnings.)
            insert: format!(
                "INSERT INTO {t} (id, data, expires_at, user_id, accessed_at) \
                 VALUES (?, ?, ?, ?, ?)"
            ),
            // sqlx connects with CLIENT_FOUND_ROWS, so the row count is the rows matched,
            // also when the new values equal the old ones.
            update: format!(
                "UPDATE {t} SET data = ?, expires_at = ?, user_id = ?, accessed_at = ?, \
                 version = version + 1 WHERE id = ? AND version >= 0 AND {}",
                live("?")
            ),
            end: format!(
                "UPDATE {t} SET data = ?, expires_at = ?, user_id = ?, accessed_at = ?, \
                 version = -1 WHERE id = ? AND version >= 0 AND {}",
                live("?")
            ),
            apply,
            end_version,
            delete: format!("DELETE FROM {t} WHERE id = ?"),
            // The derived table: MySQL deletes from a table its own subquery reads only
            // through one, and takes no LIMIT in an IN subquery.
            over_limit: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM (SELECT id FROM {t} \
                 WHERE user_id = ? AND id <> ? AND version >= 0 AND {} \
                 ORDER BY accessed_at DESC, id LIMIT 18446744073709551615 OFFSET ?) AS over_limit)",
                live("?")
            ),
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
            locks,
        }
    }

    fn ddl(table: &TableName) -> Vec<String> {
        let t = table.quoted('`');
        vec![
            // user_id is VARBINARY: users compare byte for byte (a `_bin` collation of a
            // character set still ignores trailing spaces), and 255 bytes, the longest
            // user, fit any InnoDB index whatever the table's row format. lock_token holds
            // the token of a locked route's request (ASCII, compared exactly, like ids).
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, \
                 data LONGBLOB NOT NULL, \
                 expires_at BIGINT NULL, \
                 version BIGINT NOT NULL DEFAULT 0, \
                 accessed_at BIGINT NULL, \
                 user_id VARBINARY(255) NULL, \
                 lock_token VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL, \
                 lock_until BIGINT NULL, \
                 INDEX `{}` (expires_at), \
                 INDEX `{}` (user_id))",
                table.index_name(),
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

    fn lazy_pool(url: &str, acquire_timeout: Duration) -> Result<sqlx::Pool<Self>, sqlx::Error> {
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
        accessed: i64,
    ) -> Result<bool, sqlx::Error> {
        let bytes = id.len() + data.len() + user.map_or(0, str::len);
        let args = arguments!(bytes; id, data, expires_at, user, accessed)?;
        let result = sqlx::query_with(sql, args).execute(conn).await;
        match result {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }

    common_statements!();
}
