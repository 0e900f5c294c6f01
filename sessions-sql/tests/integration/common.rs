//! Real databases for the tests: SQLite in memory and in a temp file, the PostgreSQL at
//! `DATABASE_URL` and the MariaDB/MySQL at `MYSQL_URL`. Every test works in a table of its own
//! (`sessions_test_<random>`), dropped (or its file deleted) when the test ends, also when it
//! fails.

#![allow(dead_code)]

use serde_json::json;
use sessionkit_core::{JsonSerializer, Serializer, SessionData};
use sessionkit_sql::{SqlBackend, SqlBackendBuilder, SqlDatabase};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub fn postgres_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A table name no other run or test uses.
pub fn unique_table(prefix: &str) -> String {
    format!("{prefix}_{:016x}", random_u64())
}

pub fn now_ms() -> i64 {
    sessionkit_core::Clock::system().unix_millis() as i64
}

pub fn data(value: serde_json::Value) -> SessionData {
    let serde_json::Value::Object(values) = value else {
        panic!("test data must be an object")
    };
    SessionData::new(values)
}

pub fn n(n: u64) -> SessionData {
    data(json!({ "n": n }))
}

pub const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

/// Raw SQL on a database, for checking and arranging what the backend stores.
pub trait Raw: SqlDatabase {
    /// The identifier quote.
    const QUOTE: char;
    /// Run a statement; rows affected.
    fn exec(pool: &sqlx::Pool<Self>, sql: &str) -> impl Future<Output = u64> + Send;
    /// The first column of the only row, as an integer (`NULL` → `None`).
    fn int(pool: &sqlx::Pool<Self>, sql: &str) -> impl Future<Output = Option<i64>> + Send;
    /// The first column of the only row, as bytes.
    fn bytes(pool: &sqlx::Pool<Self>, sql: &str) -> impl Future<Output = Vec<u8>> + Send;
    /// A SQL literal for `bytes`.
    fn bytes_literal(bytes: &[u8]) -> String;
    /// The server's URL; `None` for SQLite.
    fn server_url() -> Option<String>;
}

/// Drop `table` when the returned guard is dropped (on a server; SQLite tables go with their
/// file or memory).
pub fn drop_table_later<DB: Raw>(table: &str) -> Option<DropLater> {
    let q = DB::QUOTE;
    DB::server_url().map(|url| DropLater(url, format!("DROP TABLE IF EXISTS {q}{table}{q}")))
}

pub struct DropLater(String, String);

impl Drop for DropLater {
    fn drop(&mut self) {
        drop_table(self.0.clone(), self.1.clone());
    }
}

macro_rules! raw_impl {
    ($db:ty, $quote:expr, $server:expr, |$hex:ident| $literal:expr) => {
        impl Raw for $db {
            const QUOTE: char = $quote;
            async fn exec(pool: &sqlx::Pool<Self>, sql: &str) -> u64 {
                sqlx::raw_sql(sql)
                    .execute(pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .rows_affected()
            }
            async fn int(pool: &sqlx::Pool<Self>, sql: &str) -> Option<i64> {
                sqlx::query_scalar::<_, Option<i64>>(sql)
                    .fetch_one(pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            async fn bytes(pool: &sqlx::Pool<Self>, sql: &str) -> Vec<u8> {
                sqlx::query_scalar::<_, Vec<u8>>(sql)
                    .fetch_one(pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            fn bytes_literal(bytes: &[u8]) -> String {
                let $hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                $literal
            }
            fn server_url() -> Option<String> {
                $server
            }
        }
    };
}

#[cfg(feature = "sqlite")]
raw_impl!(sqlx::Sqlite, '"', None, |hex| format!("X'{hex}'"));
#[cfg(feature = "postgres")]
raw_impl!(sqlx::Postgres, '"', Some(postgres_url()), |hex| format!(
    "decode('{hex}', 'hex')"
));
#[cfg(feature = "mysql")]
raw_impl!(sqlx::MySql, '`', Some(mysql_url()), |hex| format!(
    "X'{hex}'"
));

/// Where a test's sessions live; removes them when dropped.
pub enum Place {
    Memory,
    File(PathBuf),
    Postgres(String),
    MySql(String),
}

impl Drop for Place {
    fn drop(&mut self) {
        match self {
            Place::Memory => {}
            Place::File(path) => {
                for suffix in ["", "-journal", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Place::Postgres(table) => {
                drop_table(postgres_url(), format!("DROP TABLE IF EXISTS \"{table}\""))
            }
            Place::MySql(table) => {
                drop_table(mysql_url(), format!("DROP TABLE IF EXISTS `{table}`"))
            }
        }
    }
}

/// Drop a table on a connection of its own, on a thread and runtime of its own (a test's
/// runtime may be shutting down). Best effort: never panics.
fn drop_table(url: String, sql: String) {
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            #[cfg(any(feature = "postgres", feature = "mysql"))]
            use sqlx::{Connection, Executor};
            if url.starts_with("postgres") {
                #[cfg(feature = "postgres")]
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let _ = conn.execute(sql.as_str()).await;
                    let _ = conn.close().await;
                }
            } else {
                #[cfg(feature = "mysql")]
                if let Ok(mut conn) = sqlx::MySqlConnection::connect(&url).await {
                    let _ = conn.execute(sql.as_str()).await;
                    let _ = conn.close().await;
                }
            }
            let _ = (url, sql);
        });
    })
    .join();
}

/// One kind of database the tests run on.
pub trait Kind: Send + Sync + 'static {
    type DB: Raw;
    /// A URL to a database for one test and where its table goes.
    fn place(table: &str) -> (String, Place);
    /// Whether two pools made from the URL see the same data (not so for `sqlite::memory:`).
    const SHARED_URL: bool = true;
}

#[cfg(feature = "sqlite")]
pub struct SqliteMemory;
#[cfg(feature = "sqlite")]
impl Kind for SqliteMemory {
    type DB = sqlx::Sqlite;
    const SHARED_URL: bool = false;
    fn place(_table: &str) -> (String, Place) {
        ("sqlite::memory:".to_owned(), Place::Memory)
    }
}

#[cfg(feature = "sqlite")]
pub struct SqliteFile;
#[cfg(feature = "sqlite")]
impl Kind for SqliteFile {
    type DB = sqlx::Sqlite;
    fn place(table: &str) -> (String, Place) {
        let path = std::env::temp_dir().join(format!("sessionkit-sql-{table}.db"));
        (format!("sqlite://{}", path.display()), Place::File(path))
    }
}

#[cfg(feature = "postgres")]
pub struct Postgres;
#[cfg(feature = "postgres")]
impl Kind for Postgres {
    type DB = sqlx::Postgres;
    fn place(table: &str) -> (String, Place) {
        (postgres_url(), Place::Postgres(table.to_owned()))
    }
}

#[cfg(feature = "mysql")]
pub struct MySql;
#[cfg(feature = "mysql")]
impl Kind for MySql {
    type DB = sqlx::MySql;
    fn place(table: &str) -> (String, Place) {
        (mysql_url(), Place::MySql(table.to_owned()))
    }
}

/// A migrated backend on a table of its own, and what removes it.
pub struct Fixture<K: Kind> {
    pub backend: SqlBackend<K::DB>,
    pub url: String,
    pub table: String,
    // Last: dropped after the backend has given its connections back.
    place: Place,
    _kind: std::marker::PhantomData<K>,
}

impl<K: Kind> Fixture<K> {
    /// A new table, not yet created.
    pub fn unmigrated() -> Self {
        let table = unique_table("sessions_test");
        let (url, place) = K::place(&table);
        // The tests' own queries go through the same pool: leave them two connections.
        let backend = SqlBackend::<K::DB>::builder_from_url(&url)
            .with_max_connections(8)
            .with_table(&table)
            .build()
            .unwrap();
        Fixture {
            backend,
            url,
            table,
            place,
            _kind: std::marker::PhantomData,
        }
    }

    pub async fn new() -> Self {
        let fixture = Self::unmigrated();
        fixture.backend.migrate().await.unwrap();
        fixture
    }

    pub fn pool(&self) -> &sqlx::Pool<K::DB> {
        self.backend.pool()
    }

    /// The table name, quoted for SQL.
    pub fn t(&self) -> String {
        let q = <K::DB as Raw>::QUOTE;
        format!("{q}{}{q}", self.table)
    }

    /// Another backend on the same table, as another instance of the application would have:
    /// a pool of its own where the database allows it.
    pub fn another_instance(&self) -> SqlBackend<K::DB> {
        self.another_instance_builder().build().unwrap()
    }

    /// The builder of [`another_instance`](Self::another_instance), for options of its own.
    pub fn another_instance_builder(&self) -> SqlBackendBuilder<K::DB> {
        let builder = if K::SHARED_URL {
            SqlBackend::<K::DB>::builder_from_url(&self.url)
        } else {
            SqlBackend::<K::DB>::builder(self.pool().clone())
        };
        builder.with_table(&self.table)
    }

    /// A builder for a variant of the fixture's backend: the same pool and table, two
    /// connections of its own (the fixture's backend keeps up to eight of the pool's ten).
    pub fn variant(&self) -> SqlBackendBuilder<K::DB> {
        SqlBackend::<K::DB>::builder(self.pool().clone())
            .with_max_connections(2)
            .with_table(&self.table)
    }

    pub async fn exec(&self, sql: &str) -> u64 {
        K::DB::exec(self.pool(), sql).await
    }

    pub async fn int(&self, sql: &str) -> Option<i64> {
        K::DB::int(self.pool(), sql).await
    }

    pub async fn rows(&self) -> i64 {
        self.int(&format!("SELECT COUNT(*) FROM {}", self.t()))
            .await
            .unwrap()
    }

    pub async fn expires_at(&self, id: &str) -> Option<i64> {
        self.int(&format!(
            "SELECT expires_at FROM {} WHERE id = '{id}'",
            self.t()
        ))
        .await
    }

    /// Fail unless the row of `id` is an end marker (see [`assert_end_marker_row`]).
    pub async fn assert_end_marker(&self, id: &str) {
        assert_end_marker_row(self.pool(), &self.t(), id).await;
    }

    /// Make the row of `id` expired a minute ago.
    pub async fn expire_now(&self, id: &str) {
        let sql = format!(
            "UPDATE {} SET expires_at = {} WHERE id = '{id}'",
            self.t(),
            now_ms() - 60_000
        );
        assert_eq!(self.exec(&sql).await, 1);
    }

    /// Insert `count` rows expired a minute ago, straight into the table, ids `exp-<i>`.
    pub async fn insert_expired(&self, count: usize) {
        let record = JsonSerializer.serialize(&n(0)).unwrap();
        let literal = K::DB::bytes_literal(&record);
        let past = now_ms() - 60_000;
        let ids: Vec<usize> = (0..count).collect();
        for chunk in ids.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|i| format!("('exp-{i}-{:x}', {literal}, {past})", random_u64()))
                .collect();
            let sql = format!(
                "INSERT INTO {} (id, data, expires_at) VALUES {}",
                self.t(),
                values.join(", ")
            );
            assert_eq!(self.exec(&sql).await, chunk.len() as u64);
        }
    }

    pub async fn expired_rows(&self) -> i64 {
        self.int(&format!(
            "SELECT COUNT(*) FROM {} WHERE expires_at <= {}",
            self.t(),
            now_ms()
        ))
        .await
        .unwrap()
    }
}

/// Fail unless the row of `id` in `table` (quoted) is an end marker: version -1, no data,
/// bound to no user, expiring within `ENDED_GRACE` from now.
pub async fn assert_end_marker_row<DB: Raw>(pool: &sqlx::Pool<DB>, table: &str, id: &str) {
    let data = DB::bytes(pool, &format!("SELECT data FROM {table} WHERE id = '{id}'")).await;
    assert!(data.is_empty(), "the end marker of {id} holds data");
    let version = DB::int(
        pool,
        &format!("SELECT version FROM {table} WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(version, Some(-1), "row {id} is no end marker");
    let bound = DB::int(
        pool,
        &format!("SELECT COUNT(*) FROM {table} WHERE id = '{id}' AND user_id IS NOT NULL"),
    )
    .await;
    assert_eq!(bound, Some(0), "the end marker of {id} is bound to a user");
    let expires_at = DB::int(
        pool,
        &format!("SELECT expires_at FROM {table} WHERE id = '{id}'"),
    )
    .await
    .expect("an end marker expires");
    let now = now_ms();
    let grace = i64::try_from(sessionkit_core::ENDED_GRACE.as_millis()).unwrap();
    assert!(
        expires_at > now && expires_at <= now + grace,
        "the end marker of {id} expires in {} ms",
        expires_at - now
    );
}

/// One test body per kind of database: `for_each_db!(name, ...)` makes `sqlite_memory::name`,
/// `sqlite_file::name`, `postgres::name` and `mysql::name`, each calling `name::<Kind>()`.
macro_rules! for_each_db {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<crate::common::SqliteMemory>().await
                }
            )*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<crate::common::SqliteFile>().await
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<crate::common::Postgres>().await
                }
            )*
        }
        #[cfg(feature = "mysql")]
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<crate::common::MySql>().await
                }
            )*
        }
    };
}
pub(crate) use for_each_db;
