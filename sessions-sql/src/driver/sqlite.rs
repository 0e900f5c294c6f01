//! The SQLite driver: its statements, and how its rows and errors are read.

use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::str::FromStr;

impl Driver for sqlx::Sqlite {
    const LABEL: &'static str = "sqlite";

    fn statements(table: &TableName) -> Statements {
        let t = table.quoted('"');
        let apply = format!(
            "UPDATE {t} SET data = ?1, expires_at = ?2, user_id = ?3, \
             accessed_at = ?4, version = version + 1 WHERE id = ?5 \
             AND version = ?6 AND {}",
            live("?7")
        );
        let end_version = format!(
            "UPDATE {t} SET data = ?1, expires_at = ?2, user_id = ?3, \
             accessed_at = ?4, version = -1 WHERE id = ?5 AND version = ?6 \
             AND {}",
            live("?7")
        );
        let locks = LockStatements::new(&t, &apply, &end_version, |n| format!("?{n}"));
        Statements {
            read: format!(
                "SELECT data, version FROM {t} WHERE id = ?1 AND {}",
                live("?2")
            ),
            exists: format!(
                "SELECT 1 FROM {t} WHERE id = ?1 AND version >= 0 AND {}",
                live("?2")
            ),
            insert: format!(
                "INSERT INTO {t} (id, data, expires_at, user_id, accessed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO NOTHING"
            ),
            update: format!(
                "UPDATE {t} SET data = ?1, expires_at = ?2, user_id = ?3, \
                 accessed_at = ?4, version = version + 1 WHERE id = ?5 AND version >= 0 \
                 AND {}",
                live("?6")
            ),
            end: format!(
                "UPDATE {t} SET data = ?1, expires_at = ?2, user_id = ?3, \
                 accessed_at = ?4, version = -1 WHERE id = ?5 AND version >= 0 AND {}",
                live("?6")
            ),
            apply,
            end_version,
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            over_limit: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} \
                 WHERE user_id = ?1 AND id <> ?2 AND version >= 0 AND {} \
                 ORDER BY accessed_at DESC, id LIMIT -1 OFFSET ?4)",
                live("?3")
            ),
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
            locks,
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
                 accessed_at INTEGER, \
                 user_id TEXT, \
                 lock_token TEXT, \
                 lock_until INTEGER) WITHOUT ROWID"
            ),
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

    fn lazy_pool(url: &str, acquire_timeout: Duration) -> Result<sqlx::Pool<Self>, sqlx::Error> {
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
