//! Bounded load and fault tests: many clients, each counting in its own session, against real
//! servers on loopback. At the end every client's counter must equal the requests it saw
//! succeed: no lost, mixed-up or resurrected sessions, no 5xx while the store is up. Every
//! tenth request a client also sends two requests at once that set a key each: both keys of
//! every such pair that succeeded must be in its session at the end (no lost update).
//!
//! `SOAK_SECONDS` (default 8) sets each run's length and `SOAK_CLIENTS` (default 200) the
//! number of clients; `scripts/soak` runs the long version and prints the figures.

mod common;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use common::Server;
use reqwest::{Client, StatusCode};
use sessionkit_core::SessionBackend;
use sessionkit_memory::InMemoryBackend;
use sessionkit_redis::RedisBackend;
use sessionkit_tower::{Error, Session, SessionLayer};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn soak_duration() -> Duration {
    Duration::from_secs(env_number("SOAK_SECONDS", 4))
}

fn soak_clients() -> usize {
    usize::try_from(env_number("SOAK_CLIENTS", 200)).unwrap_or(200)
}

async fn increment(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, Error> {
    Ok(session.get::<u64>("n")?.unwrap_or(0).to_string())
}

/// Sets the key named in the path, beside whatever else the session holds.
async fn mark(session: Session, Path(key): Path<String>) -> Result<&'static str, Error> {
    session.insert(&key, true)?;
    Ok("marked")
}

async fn keys(session: Session) -> Result<String, Error> {
    Ok(session.keys().join(","))
}

fn soak_app<B: SessionBackend>(backend: B) -> Router {
    Router::new()
        .route("/inc", get(increment))
        .route("/read", get(read))
        .route("/mark/{key}", get(mark))
        .route("/keys", get(keys))
        .layer(
            SessionLayer::builder(backend)
                .with_secure(false)
                .build()
                .unwrap(),
        )
}

/// What one client saw.
#[derive(Debug, Default, Clone)]
struct ClientReport {
    ok: u64,
    errors: u64,
    /// The counter the server reported on the last success.
    last_seen: u64,
    /// Successes answered with a count other than the one expected.
    mismatches: u64,
    final_count: u64,
    /// Keys set by pairs of overlapping requests that both succeeded.
    marks: Vec<String>,
    /// Of those, the keys missing from the session at the end.
    lost_marks: u64,
    /// When the first failure was seen (a request in flight when the store stops fails
    /// after the stop, though it was sent before).
    first_error: Option<Instant>,
    /// When the last failed request was sent (not when it failed: one sent during an outage
    /// may wait out a pool timeout after the store is back).
    last_error: Option<Instant>,
    /// When the last successful answer arrived.
    last_ok: Option<Instant>,
}

/// What a whole run saw.
#[derive(Debug)]
struct SoakReport {
    requests: u64,
    ok: u64,
    errors: u64,
    mismatches: u64,
    marks: u64,
    lost_marks: u64,
    elapsed: Duration,
    clients: Vec<ClientReport>,
}

impl SoakReport {
    fn print(&self, name: &str) {
        println!(
            "soak {name}: {} clients, {:.1} s, {} requests ({:.0}/s), {} ok, {} errors, {} mismatches, {} overlapping keys set, {} lost",
            self.clients.len(),
            self.elapsed.as_secs_f64(),
            self.requests,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.ok,
            self.errors,
            self.mismatches,
            self.marks,
            self.lost_marks
        );
    }

    /// Every client got a successful answer after the store came `back`, without a restart
    /// of the app. How long recovery took is printed, not asserted: on a loaded machine it
    /// varies, and what matters is that nothing was lost and everyone got through.
    fn assert_recovered(&self, name: &str, back: Instant) {
        for (i, c) in self.clients.iter().enumerate() {
            assert!(
                c.last_ok.is_some_and(|ok| ok > back),
                "{name}: client {i} never succeeded after the store came back"
            );
        }
    }

    /// Every client's final counter lies between its successes and successes plus failures
    /// (a failed response may still have been saved), and successes saw the count go up
    /// by exactly one each time.
    fn assert_consistent(&self, name: &str) {
        for (i, c) in self.clients.iter().enumerate() {
            assert!(
                c.final_count >= c.ok && c.final_count <= c.ok + c.errors,
                "{name}: client {i} counted {} with {} successes and {} errors",
                c.final_count,
                c.ok,
                c.errors
            );
        }
        assert_eq!(self.mismatches, 0, "{name}: a client saw another's count");
        assert_eq!(
            self.lost_marks, 0,
            "{name}: keys set by overlapping requests were lost"
        );
    }
}

/// Run `clients` clients against `server` until `stop` is set or `duration` passes.
async fn soak(server: &Server, clients: usize, duration: Duration, tolerate: bool) -> SoakReport {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let inc = server.url("/inc");
            let read = server.url("/read");
            let mark = server.url("/mark");
            let keys = server.url("/keys");
            tokio::spawn(async move {
                let client = Client::builder()
                    .cookie_store(true)
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("a client");
                let mut report = ClientReport::default();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match client.get(&inc).send().await {
                        Ok(response) if response.status() == StatusCode::OK => {
                            let n: u64 = response
                                .text()
                                .await
                                .ok()
                                .and_then(|t| t.parse().ok())
                                .unwrap_or(0);
                            // Without failures every success adds exactly one. After a failed
                            // request that was nevertheless saved, one success may skip one.
                            if n != report.last_seen + 1 && !(tolerate && n > report.last_seen) {
                                report.mismatches += 1;
                            }
                            report.last_seen = n;
                            report.ok += 1;
                            report.last_ok = Some(Instant::now());
                            if report.ok % 10 == 0 {
                                // Two requests at once on the same session, a key each.
                                let (a, b) = (format!("a{n}"), format!("b{n}"));
                                let (first, second) = tokio::join!(
                                    client.get(format!("{mark}/{a}")).send(),
                                    client.get(format!("{mark}/{b}")).send()
                                );
                                let ok = |r: &reqwest::Result<reqwest::Response>| {
                                    r.as_ref().is_ok_and(|r| r.status() == StatusCode::OK)
                                };
                                if ok(&first) && ok(&second) {
                                    report.marks.extend([a, b]);
                                }
                            }
                        }
                        _ => {
                            report.errors += 1;
                            report.first_error.get_or_insert_with(Instant::now);
                            report.last_error = Some(sent);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                // The final count, read back (retrying while the store recovers).
                for _ in 0..100 {
                    if let Ok(response) = client.get(&read).send().await {
                        if response.status() == StatusCode::OK {
                            report.final_count = response
                                .text()
                                .await
                                .ok()
                                .and_then(|t| t.parse().ok())
                                .unwrap_or(0);
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if !report.marks.is_empty() {
                    let stored = match client.get(&keys).send().await {
                        Ok(response) => response.text().await.unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    let stored: Vec<&str> = stored.split(',').collect();
                    report.lost_marks = report
                        .marks
                        .iter()
                        .filter(|key| !stored.contains(&key.as_str()))
                        .count() as u64;
                }
                report
            })
        })
        .collect();
    let mut reports = Vec::with_capacity(clients);
    for task in tasks {
        reports.push(task.await.expect("a client task panicked"));
    }
    let ok = reports.iter().map(|r| r.ok).sum();
    let errors = reports.iter().map(|r| r.errors).sum();
    SoakReport {
        requests: ok + errors,
        ok,
        errors,
        mismatches: reports.iter().map(|r| r.mismatches).sum(),
        marks: reports.iter().map(|r| r.marks.len() as u64).sum(),
        lost_marks: reports.iter().map(|r| r.lost_marks).sum(),
        elapsed: started.elapsed(),
        clients: reports,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_memory_keeps_every_counter_and_stays_bounded() {
    let clients = soak_clients();
    let bound = clients + clients / 2;
    let backend = InMemoryBackend::new().with_max_sessions(bound);
    let server = Server::start(soak_app(backend.clone())).await;
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (backend, watching) = (backend.clone(), Arc::clone(&watching));
        tokio::spawn(async move {
            let mut peak = 0;
            while watching.load(Ordering::Relaxed) {
                peak = peak.max(backend.len());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        })
    };
    let report = soak(&server, clients, soak_duration(), false).await;
    watching.store(false, Ordering::Relaxed);
    let peak = watcher.await.expect("the watcher");
    report.print("memory");
    println!("soak memory: peak {peak} stored sessions, bound {bound}");
    assert_eq!(report.errors, 0, "errors against the memory backend");
    assert!(report.ok > 0);
    report.assert_consistent("memory");
    assert!(
        peak <= bound,
        "the memory backend held {peak} sessions, over {bound}"
    );
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique_prefix(name: &str) -> String {
    format!(
        "sessions-soak:{name}:{}:",
        &sessionkit_core::generate_id()[..10]
    )
}

async fn delete_prefix(url: &str, prefix: &str) {
    use sessionkit_redis::deadpool_redis::redis;
    let Ok(client) = redis::Client::open(url) else {
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
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_redis_keeps_every_counter() {
    let prefix = unique_prefix("steady");
    let backend = RedisBackend::from_url(&redis_url())
        .expect("a redis URL")
        .with_prefix(prefix.as_str());
    let server = Server::start(soak_app(backend)).await;
    let report = soak(&server, soak_clients(), soak_duration(), false).await;
    report.print("redis");
    delete_prefix(&redis_url(), &prefix).await;
    assert_eq!(report.errors, 0, "errors against a healthy Redis");
    assert!(report.ok > 0);
    report.assert_consistent("redis");
}

/// A redis-server of the test's own, on its own port and data directory, persisting every
/// write so a restart keeps the sessions.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("sessions-soak-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("a data directory");
        let mut redis = OwnRedis {
            port,
            dir,
            child: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian: apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test's redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_survives_a_redis_restart() {
    let mut redis = OwnRedis::start();
    let backend = RedisBackend::from_url(&redis.url())
        .expect("a redis URL")
        .with_pool_timeout(Duration::from_millis(500));
    let server = Arc::new(Server::start(soak_app(backend)).await);
    let clients = soak_clients().min(100);
    let duration = soak_duration().max(Duration::from_secs(5));
    let run = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { soak(&server, clients, duration, true).await })
    };
    let third = duration / 3;
    tokio::time::sleep(third).await;
    let down = Instant::now();
    redis.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = Instant::now();
    redis.spawn();
    let report = run.await.expect("the soak run");
    report.print("redis restart");

    let last_error = report.clients.iter().filter_map(|c| c.last_error).max();
    let first_error = report.clients.iter().filter_map(|c| c.first_error).min();
    if let (Some(first), Some(last)) = (first_error, last_error) {
        println!(
            "soak redis restart: first failure {:.2} s after the stop, last failed request sent {:.2} s after it, {:.2} s after the restart",
            first.saturating_duration_since(down).as_secs_f64(),
            last.saturating_duration_since(down).as_secs_f64(),
            last.saturating_duration_since(restarted).as_secs_f64()
        );
        assert!(first >= down, "a failure before Redis went down");
    }
    assert!(
        report.errors > 0,
        "the outage went unnoticed: was Redis really stopped?"
    );
    report.assert_consistent("redis restart");
    report.assert_recovered("redis restart", restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_sqlite_keeps_every_counter() {
    let path = std::env::temp_dir().join(format!(
        "sessions-soak-{}.db",
        &sessionkit_core::generate_id()[..12]
    ));
    let backend = sessionkit_sql::SqliteBackend::from_url(&format!("sqlite://{}", path.display()))
        .expect("a SQLite URL");
    backend.migrate().await.expect("migrate");
    let server = Server::start(soak_app(backend)).await;
    let report = soak(&server, soak_clients(), soak_duration(), false).await;
    report.print("sqlite");
    drop(server);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    assert_eq!(report.errors, 0, "errors against SQLite");
    assert!(report.ok > 0);
    report.assert_consistent("sqlite");
}

/// A PostgreSQL cluster of the test's own (initdb in a temporary directory, its own port),
/// run as the `postgres` user when the test runs as root, as PostgreSQL requires.
struct OwnPostgres {
    port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
}

impl OwnPostgres {
    fn find_bin() -> Option<std::path::PathBuf> {
        let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        versions.sort();
        versions.pop()
    }

    fn command(&self, program: &str) -> Command {
        let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
            || Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let program = self.bin.join(program);
        if root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn start() -> OwnPostgres {
        let bin =
            Self::find_bin().expect("PostgreSQL's initdb (Debian: apt-get install postgresql)");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("sessions-soak-pg-{port}"));
        std::fs::create_dir_all(&dir).expect("a data directory");
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status();
        let pg = OwnPostgres { port, dir, bin };
        let status = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(pg.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb failed");
        pg.run();
        pg
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn run(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        assert!(
            self.pg_ctl(&["-w", "-o", &options, "-l", &log.to_string_lossy(), "start"]),
            "the test's PostgreSQL did not start"
        );
    }

    /// Stop at once, as a crash would; whether it stopped.
    fn kill(&self) -> bool {
        self.pg_ctl(&["-m", "immediate", "stop"])
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_survives_a_postgres_restart() {
    let pg = OwnPostgres::start();
    let backend = sessionkit_sql::PostgresBackend::from_url(&pg.url()).expect("a Postgres URL");
    backend.migrate().await.expect("migrate");
    let server = Arc::new(Server::start(soak_app(backend)).await);
    let clients = soak_clients().min(100);
    let duration = soak_duration().max(Duration::from_secs(8));
    let run = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { soak(&server, clients, duration, true).await })
    };
    tokio::time::sleep(duration / 3).await;
    let down = Instant::now();
    assert!(
        tokio::task::block_in_place(|| pg.kill()),
        "the test's PostgreSQL did not stop"
    );
    // Down long enough that every client sends at least one request into the outage.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = Instant::now();
    tokio::task::block_in_place(|| pg.run());
    let back = Instant::now();
    let report = run.await.expect("the soak run");
    report.print("postgres restart");

    let first_error = report.clients.iter().filter_map(|c| c.first_error).min();
    let last_error = report.clients.iter().filter_map(|c| c.last_error).max();
    // Requests sent during the outage wait for a connection (the pool's acquire timeout is
    // longer than the outage) and succeed once PostgreSQL is back; only statements in flight
    // at the crash may fail, and on a run where none was, no request fails at all.
    if let (Some(first), Some(last)) = (first_error, last_error) {
        println!(
            "soak postgres restart: first failure {:.2} s after the stop, last failed request sent {:.2} s after it, {:.2} s after it accepted connections again (restart took {:.2} s)",
            first.saturating_duration_since(down).as_secs_f64(),
            last.saturating_duration_since(down).as_secs_f64(),
            last.saturating_duration_since(back).as_secs_f64(),
            back.saturating_duration_since(restarted).as_secs_f64()
        );
        assert!(first >= down, "a failure before PostgreSQL went down");
    }
    report.assert_consistent("postgres restart");
    report.assert_recovered("postgres restart", back);
}
