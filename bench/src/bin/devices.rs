//! `devices <store> <sessions> [pace_ms]`: how a long device list costs, and what it costs
//! others.
//! `store` is `memory`, `redis`, `sqlite`, `postgres` or `mariadb`.
//!
//! 1. One user gets `sessions` sessions (bound to them, created through the backend).
//! 2. The listing (`SessionBackend::user_sessions`) is timed five times (the median is
//!    printed), and its round trips counted: Redis and PostgreSQL through the counting relay
//!    (`src/proxy.rs`), SQLite and MariaDB by design (one statement), memory none.
//! 3. Another user's requests through the session layer (a read of their session, one at a
//!    time on each of 4 tasks, in-process) run for 2 s alone, then 2 s while a task lists the
//!    first user's sessions again and again (back to back, or one listing every `pace_ms`):
//!    the ratio of the two rates is printed.
//!
//! A native run on a shared 2-core machine: figures for orders of magnitude, not percents.
//! Prints one `RESULT` line. What it stored is removed before it exits (the SQL table is its
//! own; Redis keys live under a prefix of their own).

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http::header::{COOKIE, SET_COOKIE};
use sessionkit_bench::proxy::Proxy;
use sessionkit_bench::stores::{database_url, pg_upstream, redis_upstream, redis_url};
use sessionkit_core::{SessionBackend, SessionData};
use sessionkit_tower::{Error, Session, SessionLayer};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const OTHERS_TASKS: usize = 4;
const PHASE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pace = args
        .get(2)
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    let (Some(store), Some(n)) = (args.first(), args.get(1).and_then(|n| n.parse().ok())) else {
        eprintln!("usage: devices <memory|redis|sqlite|postgres|mariadb> <sessions>");
        return ExitCode::FAILURE;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(store, n, pace)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devices {store} {n}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(store: &str, n: usize, pace: Option<Duration>) -> Result<(), String> {
    let suffix = sessionkit_core::generate_id()[..10]
        .to_lowercase()
        .replace('-', "_");
    match store {
        "memory" => {
            measure(
                store,
                n,
                pace,
                sessionkit_memory::InMemoryBackend::unbounded(),
                None,
            )
            .await
        }
        "redis" => {
            let proxy = Proxy::start(redis_upstream(&redis_url())?).map_err(|e| e.to_string())?;
            let backend =
                sessionkit_redis::RedisBackend::from_url(&format!("redis://{}", proxy.addr()))
                    .map_err(|e| e.to_string())?
                    .with_prefix(format!("devices-bench:{suffix}:"));
            let result = measure(store, n, pace, backend, Some(&proxy)).await;
            delete_redis_prefix(&format!("devices-bench:{suffix}:")).await;
            result
        }
        "sqlite" => {
            let file = std::env::temp_dir().join(format!("devices-bench-{suffix}.db"));
            let backend =
                sessionkit_sql::SqliteBackend::from_url(&format!("sqlite://{}", file.display()))
                    .map_err(|e| e.to_string())?;
            backend.migrate().await.map_err(|e| e.to_string())?;
            let result = measure(store, n, pace, backend, None).await;
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
            }
            result
        }
        "postgres" => {
            let url = database_url();
            let proxy = Proxy::start(pg_upstream(&url)?).map_err(|e| e.to_string())?;
            let options: sessionkit_sql::sqlx::postgres::PgConnectOptions =
                url.parse().map_err(|e| format!("{url}: {e}"))?;
            let options = options.host("127.0.0.1").port(proxy.addr().port());
            let pool = sessionkit_sql::sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect_lazy_with(options);
            let table = format!("devices_bench_{suffix}");
            let backend = sessionkit_sql::PostgresBackend::builder(pool.clone())
                .with_table(&table)
                .build()
                .map_err(|e| e.to_string())?;
            backend.migrate().await.map_err(|e| e.to_string())?;
            let result = measure(store, n, pace, backend, Some(&proxy)).await;
            let _ = sessionkit_sql::sqlx::raw_sql(&format!("DROP TABLE \"{table}\""))
                .execute(&pool)
                .await;
            result
        }
        "mariadb" => {
            let url = std::env::var("MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
            let table = format!("devices_bench_{suffix}");
            let backend = sessionkit_sql::MySqlBackend::builder_from_url(&url)
                .with_table(&table)
                .build()
                .map_err(|e| e.to_string())?;
            backend.migrate().await.map_err(|e| e.to_string())?;
            let result = measure(store, n, pace, backend.clone(), None).await;
            let _ = sessionkit_sql::sqlx::raw_sql(&format!("DROP TABLE `{table}`"))
                .execute(backend.pool())
                .await;
            result
        }
        other => Err(format!("unknown store {other}")),
    }
}

async fn delete_redis_prefix(prefix: &str) {
    use sessionkit_redis::deadpool_redis::redis;
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

async fn whoami(session: Session) -> Result<String, Error> {
    Ok(session.get::<String>("who")?.unwrap_or_default())
}

async fn login(session: Session) -> Result<&'static str, Error> {
    session.insert("who", "other")?;
    session.set_user("other-user")?;
    Ok("in")
}

async fn measure<B: SessionBackend + Clone>(
    store: &str,
    n: usize,
    pace: Option<Duration>,
    backend: B,
    relay: Option<&Proxy>,
) -> Result<(), String> {
    let user = format!("listed-{}", sessionkit_core::generate_id());
    let hour = Some(Duration::from_secs(3600));
    for i in 0..n {
        let mut data = SessionData::default();
        data.values_mut().insert("device".into(), i.into());
        data.set_user(Some(user.as_str().into()));
        data.set_last_access(data.created_unix());
        backend
            .create(&data, hour)
            .await
            .map_err(|e| e.to_string())?;
    }

    // The listing: its time and round trips.
    let mut times = Vec::new();
    let mut trips = 0;
    for _ in 0..5 {
        let before = relay.map_or(0, Proxy::round_trips);
        let started = Instant::now();
        let listed = backend
            .user_sessions(&user)
            .await
            .map_err(|e| e.to_string())?;
        times.push(started.elapsed());
        trips = relay.map_or(0, Proxy::round_trips) - before;
        if listed.len() != n {
            return Err(format!("listed {} sessions of {n}", listed.len()));
        }
    }
    times.sort();
    let listing_time = times[2];

    // Another user's requests, alone and during repeated listings.
    let app = Router::new()
        .route("/", get(whoami))
        .route("/login", get(login))
        .layer(SessionLayer::new(backend.clone()));
    let response = app
        .clone()
        .oneshot(
            Request::get("/login")
                .body(Body::empty())
                .map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| e.to_string())?;
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("no cookie for the other user")?
        .to_owned();
    let alone = rate(&app, &cookie, Arc::new(AtomicBool::new(false))).await;
    let stop = Arc::new(AtomicBool::new(false));
    let listing = {
        let (backend, user, stop) = (backend.clone(), user.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut listings = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = backend.user_sessions(&user).await;
                listings += 1;
                match pace {
                    Some(pace) => tokio::time::sleep(pace).await,
                    None => tokio::task::yield_now().await,
                }
            }
            listings
        })
    };
    let during = rate(&app, &cookie, stop).await;
    let listings = listing.await.unwrap_or_default();
    let round_trips = match relay {
        Some(_) => trips.to_string(),
        None if store == "memory" => "0".to_owned(),
        None => "1 (one SELECT)".to_owned(),
    };
    println!(
        "RESULT store={store} sessions={n} pace_ms={} listing_ms={:.2} round_trips={round_trips} \
         other_rps_alone={alone:.0} other_rps_during={during:.0} ratio={:.2} \
         listings_during={listings}",
        pace.map_or(0, |p| p.as_millis()),
        listing_time.as_secs_f64() * 1000.0,
        during / alone,
    );
    Ok(())
}

/// The other user's requests per second over [`PHASE`]; `stop` is set when it is over.
async fn rate(app: &Router, cookie: &str, stop: Arc<AtomicBool>) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..OTHERS_TASKS)
        .map(|_| {
            let (app, cookie, stop, done) = (
                app.clone(),
                cookie.to_owned(),
                Arc::clone(&stop),
                Arc::clone(&done),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = Request::get("/")
                        .header(COOKIE, cookie.as_str())
                        .body(Body::empty())
                        .expect("a request");
                    if app.clone().oneshot(request).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    // The memory backend's futures are ready at once: let the timer run.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed) as f64 / PHASE.as_secs_f64()
}
