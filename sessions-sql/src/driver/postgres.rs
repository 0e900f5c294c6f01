//! The PostgreSQL driver: its statements, and how its rows and errors are read.

use super::*;
use sqlx::postgres::PgPoolOptions;

impl Driver for sqlx::Postgres {
    const LABEL: &'static str = "postgres";

    fn statements(table: &TableName) -> Statements {
        let t = table.quoted('"');
        let apply = format!(
            "UPDATE {t} SET data = $1, expires_at = $2, user_id = $3, \
             accessed_at = $4, version = version + 1 WHERE id = $5 \
             AND version = $6 AND {}",
            live("$7")
        );
        let end_version = format!(
            "UPDATE {t} SET data = $1, expires_at = $2, user_id = $3, \
             accessed_at = $4, version = -1 WHERE id = $5 AND version = $6 \
             AND {}",
            live("$7")
        );
        let locks = LockStatements::new(&t, &apply, &end_version, |n| format!("${n}"));
        Statements {
            read: format!(
                "SELECT data, version FROM {t} WHERE id = $1 AND {}",
                live("$2")
            ),
            exists: format!(
                "SELECT 1 FROM {t} WHERE id = $1 AND version >= 0 AND {}",
                live("$2")
            ),
            insert: format!(
                "INSERT INTO {t} (id, data, expires_at, user_id, accessed_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO NOTHING"
            ),
            update: format!(
                "UPDATE {t} SET data = $1, expires_at = $2, user_id = $3, \
                 accessed_at = $4, version = version + 1 WHERE id = $5 AND version >= 0 \
                 AND {}",
                live("$6")
            ),
            end: format!(
                "UPDATE {t} SET data = $1, expires_at = $2, user_id = $3, \
                 accessed_at = $4, version = -1 WHERE id = $5 AND version >= 0 AND {}",
                live("$6")
            ),
            apply,
            end_version,
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            over_limit: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} \
                 WHERE user_id = $1 AND id <> $2 AND version >= 0 AND {} \
                 ORDER BY accessed_at DESC, id LIMIT ALL OFFSET $4)",
                live("$3")
            ),
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
            locks,
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
                 accessed_at BIGINT, \
                 user_id TEXT, \
                 lock_token TEXT, \
                 lock_until BIGINT)"
            ),
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

    fn lazy_pool(url: &str, acquire_timeout: Duration) -> Result<sqlx::Pool<Self>, sqlx::Error> {
        PgPoolOptions::new()
            .acquire_timeout(acquire_timeout)
            .connect_lazy(url)
    }

    common_statements!();
    insert_on_conflict_do_nothing!();
}
