//! Session stores outside the process's memory: our Redis backend against tower-sessions 0.14
//! with its Redis store (`tower-sessions-redis-store` 0.16, on fred), and our SQL backend
//! (`sessionkit-sql`) against `tower-sessions-sqlx-store` 0.15 on SQLite (a temp file) and
//! PostgreSQL; a bare router for reference.
//!
//! The routes and our handlers are those of the in-memory comparison (`/read`, `/incr`);
//! tower-sessions 0.14 gets the same handlers written against its own `Session`. Each variant
//! gets [`StoreFixture::new`]'s `sessions` real sessions, created by a counting request
//! without a cookie (so every session holds `n = 1`), all distinct; measured requests cycle
//! through them.
//!
//! Every run stores its data under names of its own and removes it when the fixture is
//! dropped (also when a measurement panics):
//!
//! - ours: keys under the prefix `sessionkit-bench:<pid>-<time>:`, removed with `SCAN` + `DEL`;
//! - tower-sessions' Redis store has no key prefix (a record's key is the bare session id),
//!   so the fixture keeps the ids it created and deletes exactly those keys;
//! - SQL: a table of its own per stack (`bench_<stack>_<pid>_<time>`), dropped afterwards;
//!   SQLite databases are temp files of their own, deleted afterwards.
//!
//! The services need a tokio runtime with I/O and timers (`enable_all`); the measuring
//! binaries use a current-thread one, as for the in-memory comparison.

use crate::proxy::Proxy;
use crate::{App, Scenario, bare_routes, our_routes, plain, request, session_cookie};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::SET_COOKIE;
use http::{HeaderValue, Request, StatusCode};
use sessionkit_redis::RedisBackend;
use sessionkit_redis::deadpool_redis::redis;
use sessionkit_sql::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sessionkit_sql::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sessionkit_sql::sqlx::{ConnectOptions, Connection, Executor};
use sessionkit_sql::{PostgresBackend, SqliteBackend};
use sessionkit_tower::SessionLayer;
use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower_sessions_014::SessionManagerLayer as TsLayer014;
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{Builder, ClientLike, Config};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

/// Where the shared Redis is unless `REDIS_URL` says otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The Redis the benchmark uses: `REDIS_URL`, or [`DEFAULT_REDIS_URL`].
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// Where PostgreSQL is unless `DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL the benchmark uses: `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// sqlx's pool default, which `SqlBackend::from_url` keeps too.
const POOL_MAX_CONNECTIONS: u32 = 10;

/// The acquire timeout of `SqlBackend::from_url`'s pools.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The stacks under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreVariant {
    /// The routes alone, no session layer (the same runtime, for reference).
    Bare,
    /// Our `SessionLayer` + `sessionkit_redis::RedisBackend` (`from_url` + `with_prefix`).
    OursRedis,
    /// tower-sessions 0.14 + `tower_sessions_redis_store::RedisStore` over one fred client.
    TsRedis,
    /// Our `SessionLayer` + `sessionkit_sql::SqliteBackend` (`from_url` on a temp file).
    OursSqlite,
    /// tower-sessions 0.14 + `tower_sessions_sqlx_store::SqliteStore` (`SqlitePool::connect`).
    TsSqlite,
    /// Our `SessionLayer` + `sessionkit_sql::PostgresBackend` on a pool made as `from_url`
    /// makes it.
    OursPostgres,
    /// tower-sessions 0.14 + `tower_sessions_sqlx_store::PostgresStore` on a `PgPool`.
    TsPostgres,
}

impl StoreVariant {
    /// Every variant, in table order.
    pub const ALL: [StoreVariant; 7] = [
        StoreVariant::Bare,
        StoreVariant::OursRedis,
        StoreVariant::TsRedis,
        StoreVariant::OursSqlite,
        StoreVariant::TsSqlite,
        StoreVariant::OursPostgres,
        StoreVariant::TsPostgres,
    ];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            StoreVariant::Bare => "bare",
            StoreVariant::OursRedis => "ours-redis",
            StoreVariant::TsRedis => "ts-redis",
            StoreVariant::OursSqlite => "ours-sqlite",
            StoreVariant::TsSqlite => "ts-sqlite",
            StoreVariant::OursPostgres => "ours-postgres",
            StoreVariant::TsPostgres => "ts-postgres",
        }
    }

    /// The store behind the variant: `redis`, `sqlite`, `postgres`, or `none`.
    pub fn store(self) -> &'static str {
        match self {
            StoreVariant::Bare => "none",
            StoreVariant::OursRedis | StoreVariant::TsRedis => "redis",
            StoreVariant::OursSqlite | StoreVariant::TsSqlite => "sqlite",
            StoreVariant::OursPostgres | StoreVariant::TsPostgres => "postgres",
        }
    }

    /// The variant called `name`.
    pub fn parse(name: &str) -> Option<StoreVariant> {
        StoreVariant::ALL.into_iter().find(|v| v.name() == name)
    }

    fn cookie_name(self) -> &'static str {
        match self {
            StoreVariant::Bare
            | StoreVariant::OursRedis
            | StoreVariant::OursSqlite
            | StoreVariant::OursPostgres => "session",
            StoreVariant::TsRedis | StoreVariant::TsSqlite | StoreVariant::TsPostgres => "id",
        }
    }
}

impl fmt::Display for StoreVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// tower-sessions 0.14 handlers (the same work as `ts_read` / `ts_incr` for 0.15)

async fn ts014_read(session: tower_sessions_014::Session) -> Result<String, StatusCode> {
    let n: Option<u64> = session
        .get("n")
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(n.unwrap_or(0).to_string())
}

async fn ts014_incr(session: tower_sessions_014::Session) -> Result<String, StatusCode> {
    let n: Option<u64> = session
        .get("n")
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let n = n.unwrap_or(0) + 1;
    session
        .insert("n", n)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(n.to_string())
}

fn ts014_routes() -> Router {
    Router::new()
        .route("/", get(plain))
        .route("/read", get(ts014_read))
        .route("/incr", get(ts014_incr))
}

// ---------------------------------------------------------------------------------------------
// Cleanup

/// What a fixture stored, removed on drop.
enum Cleanup {
    None,
    /// Every key under this prefix.
    RedisPrefix {
        url: String,
        prefix: String,
    },
    /// Exactly these keys.
    RedisKeys {
        url: String,
        keys: Vec<String>,
    },
    /// A SQLite database file (and its `-wal`, `-shm` and `-journal` files).
    SqliteFile(PathBuf),
    /// A table in the PostgreSQL at `url` (its index goes with it).
    PostgresTable {
        url: String,
        table: String,
    },
}

impl Cleanup {
    fn run(&mut self) -> Result<usize, String> {
        match std::mem::replace(self, Cleanup::None) {
            Cleanup::None => Ok(0),
            Cleanup::RedisPrefix { url, prefix } => {
                let mut conn = redis_connection(&url)?;
                let mut removed = 0;
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{prefix}*"))
                        .arg("COUNT")
                        .arg(1000)
                        .query(&mut conn)
                        .map_err(|e| format!("SCAN failed: {e}"))?;
                    if !keys.is_empty() {
                        let n: usize = redis::cmd("DEL")
                            .arg(&keys)
                            .query(&mut conn)
                            .map_err(|e| format!("DEL failed: {e}"))?;
                        removed += n;
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
                Ok(removed)
            }
            Cleanup::RedisKeys { url, keys } => {
                let mut conn = redis_connection(&url)?;
                let mut removed = 0;
                for chunk in keys.chunks(500) {
                    let n: usize = redis::cmd("DEL")
                        .arg(chunk)
                        .query(&mut conn)
                        .map_err(|e| format!("DEL failed: {e}"))?;
                    removed += n;
                }
                Ok(removed)
            }
            Cleanup::SqliteFile(path) => {
                let mut removed = 0;
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    if std::fs::remove_file(&file).is_ok() {
                        removed += 1;
                    }
                }
                Ok(removed)
            }
            Cleanup::PostgresTable { url, table } => {
                // On a thread of its own with its own runtime: this may run inside another
                // runtime (a fixture dropped in async code), where blocking on one is refused.
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let mut conn = PgConnectOptions::from_str(&url)
                            .map_err(|e| e.to_string())?
                            .disable_statement_logging()
                            .connect()
                            .await
                            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
                        conn.execute(format!("DROP TABLE IF EXISTS \"{table}\"").as_str())
                            .await
                            .map_err(|e| format!("DROP TABLE {table} failed: {e}"))?;
                        let _ = conn.close().await;
                        Ok(1)
                    })
                })
                .join()
                .map_err(|_| "the cleanup thread panicked".to_owned())?
            }
        }
    }
}

fn redis_connection(url: &str) -> Result<redis::Connection, String> {
    redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// A unique name part for this run: the process id and the time.
fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// A unique SQL table name for this run's `stack`: `bench_<stack>_<pid>_<time>`.
fn table_name(stack: &str) -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("bench_{stack}_{}_{micros}", std::process::id())
}

/// The PostgreSQL connect options for `url`, through `proxy` when there is one.
///
/// Both stacks' connections set `synchronous_commit = off` (sent once, in the startup
/// message): a commit then does not wait for this machine's disk, so the time per request is
/// the stacks' and not the fsync's (which costs both the same per commit). Statements, round
/// trips and client-side instructions are the same either way.
fn pg_options(url: &str, proxy: Option<&Proxy>) -> Result<PgConnectOptions, String> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| format!("{url}: {e}"))?
        .options([("synchronous_commit", "off")]);
    Ok(match proxy {
        Some(proxy) => options
            .host(&proxy.addr().ip().to_string())
            .port(proxy.addr().port()),
        None => options,
    })
}

/// Where `url`'s server listens, `host:port`.
/// `host:port` of the Redis at `url`, for the relay.
pub fn redis_upstream(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{url}: not a redis:// URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    Ok(if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    })
}

/// The URL the Redis variants connect to: through `proxy` when there is one.
fn redis_via(url: &str, proxy: Option<&Proxy>) -> String {
    match proxy {
        Some(proxy) => format!("redis://{}", proxy.addr()),
        None => url.to_owned(),
    }
}

pub fn pg_upstream(url: &str) -> Result<String, String> {
    let options = PgConnectOptions::from_str(url).map_err(|e| format!("{url}: {e}"))?;
    Ok(format!("{}:{}", options.get_host(), options.get_port()))
}

// ---------------------------------------------------------------------------------------------
// Round trips

/// `INFO commandstats` of a Redis: calls per command. Server-wide: every client's commands
/// count, so deltas are exact only while nothing else uses that Redis.
#[derive(Clone, Debug, Default)]
pub struct CommandStats(BTreeMap<String, u64>);

impl CommandStats {
    /// The counts now.
    pub fn take(url: &str) -> Result<CommandStats, String> {
        let mut conn = redis_connection(url)?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .map_err(|e| format!("INFO commandstats failed: {e}"))?;
        let mut calls = BTreeMap::new();
        for line in info.lines() {
            // cmdstat_get:calls=4382,usec=14722,...
            let Some(rest) = line.strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let n = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = n {
                calls.insert(name.to_owned(), n);
            }
        }
        Ok(CommandStats(calls))
    }

    /// Commands counted since `earlier`, by name, leaving out the `INFO` and connection set-up
    /// commands of the measurement itself (`info`, `hello`, `client|*`, `select`, `ping`).
    pub fn since(&self, earlier: &CommandStats) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .filter(|(name, _)| {
                !matches!(name.as_str(), "info" | "hello" | "select") && !name.starts_with("client")
            })
            .filter_map(|(name, &n)| {
                let before = earlier.0.get(name).copied().unwrap_or(0);
                (n > before).then(|| (name.clone(), n - before))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture

/// One stack and scenario, ready to measure: the service and the cookies of its sessions.
pub struct StoreFixture {
    /// The variant measured.
    pub variant: StoreVariant,
    /// The scenario measured.
    pub scenario: Scenario,
    /// The service.
    pub app: App,
    cookies: Vec<HeaderValue>,
    next: Cell<usize>,
    cleanup: Cleanup,
}

impl StoreFixture {
    /// Build the service, create `sessions` distinct sessions (each holding `n = 1`) and run
    /// `warmup` requests of the scenario, checking that they behave. Needs a tokio runtime
    /// with I/O and timers; the fixture must be used on that runtime.
    ///
    /// With `proxy`, the PostgreSQL and Redis variants connect through it (to count round
    /// trips).
    pub async fn new(
        variant: StoreVariant,
        scenario: Scenario,
        sessions: usize,
        warmup: usize,
        proxy: Option<&Proxy>,
    ) -> Result<StoreFixture, String> {
        let url = redis_url();
        let (app, cleanup) = match variant {
            StoreVariant::Bare => (App::Router(bare_routes().with_state(())), Cleanup::None),
            StoreVariant::OursRedis => {
                let prefix = format!("sessionkit-bench:{}:", run_tag());
                let backend = RedisBackend::from_url(&redis_via(&url, proxy))
                    .map_err(|e| format!("ours-redis: {e}"))?
                    .with_prefix(prefix.clone());
                let router = our_routes()
                    .layer(SessionLayer::new(backend))
                    .with_state(());
                (App::Router(router), Cleanup::RedisPrefix { url, prefix })
            }
            StoreVariant::TsRedis => {
                let config = Config::from_url(&redis_via(&url, proxy))
                    .map_err(|e| format!("ts-redis: fred config: {e}"))?;
                let client = Builder::from_config(config)
                    .build()
                    .map_err(|e| format!("ts-redis: fred client: {e}"))?;
                client
                    .init()
                    .await
                    .map_err(|e| format!("ts-redis: cannot connect to {url}: {e}"))?;
                let router = ts014_routes()
                    .layer(TsLayer014::new(RedisStore::new(client)))
                    .with_state(());
                (
                    App::Router(router),
                    Cleanup::RedisKeys {
                        url,
                        keys: Vec::new(),
                    },
                )
            }
            StoreVariant::OursSqlite => {
                let path =
                    std::env::temp_dir().join(format!("sessionkit-bench-{}-ours.db", run_tag()));
                let cleanup = Cleanup::SqliteFile(path.clone());
                let backend =
                    SqliteBackend::builder_from_url(&format!("sqlite://{}", path.display()))
                        .with_table(table_name("ours"))
                        .build()
                        .map_err(|e| format!("ours-sqlite: {e}"))?;
                backend
                    .migrate()
                    .await
                    .map_err(|e| format!("ours-sqlite: migrate: {e}"))?;
                let router = our_routes()
                    .layer(SessionLayer::new(backend))
                    .with_state(());
                (App::Router(router), cleanup)
            }
            StoreVariant::TsSqlite => {
                let path =
                    std::env::temp_dir().join(format!("sessionkit-bench-{}-ts.db", run_tag()));
                let cleanup = Cleanup::SqliteFile(path.clone());
                let options = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true);
                let pool = SqlitePoolOptions::new()
                    .connect_with(options)
                    .await
                    .map_err(|e| format!("ts-sqlite: {e}"))?;
                let store = SqliteStore::new(pool)
                    .with_table_name(table_name("ts"))
                    .map_err(|e| format!("ts-sqlite: {e}"))?;
                store
                    .migrate()
                    .await
                    .map_err(|e| format!("ts-sqlite: migrate: {e}"))?;
                let router = ts014_routes().layer(TsLayer014::new(store)).with_state(());
                (App::Router(router), cleanup)
            }
            StoreVariant::OursPostgres => {
                let url = database_url();
                let table = table_name("ours");
                // As `from_url` makes it (sqlx's defaults, a 5 s acquire timeout, the backend
                // may keep every connection), but connect options of our own so that the
                // connections can go through the proxy.
                let pool = PgPoolOptions::new()
                    .max_connections(POOL_MAX_CONNECTIONS)
                    .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
                    .connect_lazy_with(pg_options(&url, proxy)?);
                let backend = PostgresBackend::builder(pool)
                    .with_max_connections(POOL_MAX_CONNECTIONS as usize)
                    .with_table(&table)
                    .build()
                    .map_err(|e| format!("ours-postgres: {e}"))?;
                let cleanup = Cleanup::PostgresTable { url, table };
                backend
                    .migrate()
                    .await
                    .map_err(|e| format!("ours-postgres: migrate: {e}"))?;
                let router = our_routes()
                    .layer(SessionLayer::new(backend))
                    .with_state(());
                (App::Router(router), cleanup)
            }
            StoreVariant::TsPostgres => {
                let url = database_url();
                let table = table_name("ts");
                let pool = PgPoolOptions::new()
                    .max_connections(POOL_MAX_CONNECTIONS)
                    .connect_with(pg_options(&url, proxy)?)
                    .await
                    .map_err(|e| format!("ts-postgres: cannot connect to {url}: {e}"))?;
                // Its default schema is `tower_sessions`, which `migrate` would create and
                // leave behind: keep the table in `public`.
                let store = PostgresStore::new(pool)
                    .with_schema_name("public")
                    .and_then(|s| s.with_table_name(&table))
                    .map_err(|e| format!("ts-postgres: {e}"))?;
                let cleanup = Cleanup::PostgresTable { url, table };
                store
                    .migrate()
                    .await
                    .map_err(|e| format!("ts-postgres: migrate: {e}"))?;
                let router = ts014_routes().layer(TsLayer014::new(store)).with_state(());
                (App::Router(router), cleanup)
            }
        };
        let mut fixture = StoreFixture {
            variant,
            scenario,
            app,
            cookies: Vec::with_capacity(sessions),
            next: Cell::new(0),
            cleanup,
        };
        fixture.create_sessions(sessions).await?;
        fixture.warm_up(warmup).await?;
        Ok(fixture)
    }

    async fn create_sessions(&mut self, sessions: usize) -> Result<(), String> {
        if self.scenario == Scenario::NoCookie {
            return Ok(());
        }
        let name = self.variant.cookie_name();
        let mut seen = HashSet::with_capacity(sessions);
        while self.cookies.len() < sessions {
            let cookie = if self.variant == StoreVariant::Bare {
                // The shape of our cookie (32 characters); nothing reads it.
                format!("{name}={:0>32}", self.cookies.len())
            } else {
                let response = self.app.send(request(Scenario::Write, None)).await;
                if response.status() != StatusCode::OK {
                    return Err(format!(
                        "{self}: creating a session answered {}",
                        response.status()
                    ));
                }
                session_cookie(&response, name)
            };
            if !seen.insert(cookie.clone()) {
                return Err(format!("{self}: a session id came twice"));
            }
            if let Cleanup::RedisKeys { keys, .. } = &mut self.cleanup {
                // tower-sessions' Redis store keeps a session under its bare id.
                if let Some((_, id)) = cookie.split_once('=') {
                    keys.push(id.to_owned());
                }
            }
            self.cookies
                .push(HeaderValue::try_from(cookie).map_err(|e| format!("{self}: {e}"))?);
        }
        Ok(())
    }

    async fn warm_up(&self, warmup: usize) -> Result<(), String> {
        for _ in 0..warmup {
            let response = self.app.send(self.next_request()).await;
            if response.status() != StatusCode::OK {
                return Err(format!(
                    "{self}: a warm-up request answered {}",
                    response.status()
                ));
            }
            let set_cookie = response.headers().contains_key(SET_COOKIE);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map_err(|e| format!("{self}: {e}"))?;
            let body = String::from_utf8_lossy(&body);
            let ok = match (self.variant, self.scenario) {
                (_, Scenario::NoCookie) => body == "ok" && !set_cookie,
                (StoreVariant::Bare, _) => !set_cookie,
                // Every session was created with n = 1.
                (_, Scenario::Read) => body == "1" && !set_cookie,
                (_, Scenario::Write) => body.parse::<u64>().is_ok_and(|n| n >= 2) && set_cookie,
            };
            if !ok {
                return Err(format!(
                    "{self}: unexpected warm-up answer {body:?} (Set-Cookie: {set_cookie})"
                ));
            }
        }
        Ok(())
    }

    /// The next request of the scenario, cycling through the sessions.
    pub fn next_request(&self) -> Request<Body> {
        let cookie = if self.cookies.is_empty() {
            None
        } else {
            let i = self.next.get();
            self.next.set((i + 1) % self.cookies.len());
            Some(self.cookies[i].clone())
        };
        request(self.scenario, cookie)
    }

    /// The next `n` requests, built ahead so that building them is not measured.
    pub fn requests(&self, n: usize) -> Vec<Request<Body>> {
        (0..n).map(|_| self.next_request()).collect()
    }

    /// The `Cookie` header values of the sessions, one per session.
    pub fn cookies(&self) -> impl Iterator<Item = &str> {
        self.cookies.iter().filter_map(|c| c.to_str().ok())
    }

    /// Drop the stack, then remove what the fixture stored (dropping the fixture does the
    /// same); returns how many keys, files or tables went.
    ///
    /// Call it (and drop the fixture) inside the fixture's runtime context
    /// (`runtime.enter()`): sqlx's pooled connections, which our SQL backend keeps, panic when
    /// dropped outside a tokio runtime.
    pub fn cleanup(&mut self) -> Result<usize, String> {
        // The stack first: its pools and connections go (SQLite files are closed).
        drop(std::mem::replace(
            &mut self.app,
            App::Router(Router::new().with_state(())),
        ));
        self.cleanup.run()
    }
}

impl Drop for StoreFixture {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("{self}: cleanup failed: {e}");
        }
    }
}

impl fmt::Display for StoreFixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.variant, self.scenario)
    }
}
