//! Logins and logouts racing other requests of the same session, over HTTP, on every
//! server-side backend: the answers are applied to one cookie jar in the order they arrive,
//! as a browser applies them. No request that overlapped a login or a logout changes the
//! client's cookie, and nothing it did reaches the session the login made. Also: a burst of
//! saves to one session all succeed.

mod common;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use common::{CapturedEvents, Reply, Server, plain, send};
use sessionkit_core::{Clock, ENDED_GRACE, SessionBackend};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, LazySession, Session, SessionLayer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The `tracing` events of every test here, so a failure can show why a save failed.
fn events() -> &'static CapturedEvents {
    static EVENTS: std::sync::OnceLock<CapturedEvents> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| {
        let events = CapturedEvents::default();
        let _ = tracing::subscriber::set_global_default(events.clone());
        events
    })
}

/// Where the slow handlers wait: `loaded` when they have read the session, `go` to finish.
#[derive(Default)]
struct Gates {
    loaded: Notify,
    go: Notify,
}

async fn login(session: Session) -> Result<&'static str, Error> {
    session.regenerate_id()?;
    session.insert("user", "ada")?;
    Ok("in")
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.delete().await?;
    Ok("out")
}

/// The user and the session's keys, sorted.
async fn whoami(session: Session) -> Result<String, Error> {
    let user = session
        .get::<String>("user")?
        .unwrap_or_else(|| "anonymous".into());
    let mut keys = session.keys();
    keys.sort();
    Ok(format!("{user} {}", keys.join(",")))
}

/// Loads the session, says so, waits for `go`, then writes `key`.
async fn slow_write(
    State(gates): State<Arc<Gates>>,
    Path(key): Path<String>,
    lazy: LazySession,
) -> Result<&'static str, Error> {
    let session = lazy.load().await?;
    gates.loaded.notify_one();
    gates.go.notified().await;
    session.insert(&key, true)?;
    Ok("written")
}

/// Waits for `go`, then loads the session and reads it: a request sent before a login
/// answered and handled after it.
async fn slow_read(State(gates): State<Arc<Gates>>, lazy: LazySession) -> Result<String, Error> {
    gates.go.notified().await;
    let session = lazy.load().await?;
    Ok(session
        .get::<String>("user")?
        .unwrap_or_else(|| "anonymous".into()))
}

/// Logs in as `user`: a new id, bound to the user.
async fn login_as(session: Session, Path(user): Path<String>) -> Result<&'static str, Error> {
    session.regenerate_id()?;
    session.set_user(user)?;
    Ok("in")
}

/// Moves the session to a new id (what some apps do on every privilege change).
async fn rotate(session: Session) -> Result<String, Error> {
    session.regenerate_id()?;
    Ok(session.user().unwrap_or_else(|| "anonymous".into()))
}

/// "Sign out of other devices".
async fn revoke_others(session: Session) -> Result<String, Error> {
    Ok(session.revoke_other_sessions().await?.to_string())
}

/// How many live sessions the session's user has.
async fn devices(session: Session) -> Result<String, Error> {
    Ok(session.user_sessions().await?.len().to_string())
}

async fn set(session: Session, Path(key): Path<String>) -> Result<&'static str, Error> {
    session.insert(&key, true)?;
    Ok("set")
}

fn app<B: SessionBackend>(backend: B, clock: Clock, gates: Arc<Gates>) -> Router {
    Router::new()
        .route("/login", get(login))
        .route("/logout", get(logout))
        .route("/whoami", get(whoami))
        .route("/slow-write/{key}", get(slow_write))
        .route("/slow-read", get(slow_read))
        .route("/set/{key}", get(set))
        .route("/login-as/{user}", get(login_as))
        .route("/rotate", get(rotate))
        .route("/revoke-others", get(revoke_others))
        .route("/devices", get(devices))
        .with_state(gates)
        .layer(
            SessionLayer::builder(backend)
                .with_secure(false)
                .with_clock(clock)
                .with_max_sessions_per_user(MAX_PER_USER)
                .build()
                .expect("a valid layer"),
        )
}

/// The layer's limit of sessions per user.
const MAX_PER_USER: usize = 3;

/// A user who logs in on one device more than the limit allows loses the least recently
/// used session, and keeps the others.
async fn logins_beyond_the_limit_end_the_least_recently_used(rig: &Rig) {
    let user = format!("capped-{}", &sessionkit_core::generate_id()[..8]);
    let mut devices = Vec::new();
    for _ in 0..=MAX_PER_USER {
        let mut jar = Jar::default();
        jar.take(&rig.get(&format!("/login-as/{user}"), &jar).await);
        devices.push(jar);
        // Each login a second later: the last use orders them.
        rig.clock.advance(Duration::from_secs(1));
        if !rig.manual {
            tokio::time::sleep(Duration::from_millis(1_050)).await;
        }
    }
    let first = rig.get("/whoami", &devices[0]).await;
    assert!(
        first.body.starts_with("anonymous"),
        "{}: the least recently used session outlived the limit: {}",
        rig.store,
        first.body
    );
    for jar in &devices[1..] {
        let listed = rig.get("/devices", jar).await;
        assert_eq!(listed.body, MAX_PER_USER.to_string(), "{}", rig.store);
    }
}

/// A browser's cookie jar for the session cookie: each answer is applied as it arrives.
#[derive(Default, Debug)]
struct Jar(Option<String>);

impl Jar {
    fn take(&mut self, reply: &Reply) {
        for cookie in reply.set_cookies.iter().filter(|c| c.name == "session") {
            self.0 = (!cookie.is_expiry()).then(|| cookie.pair());
        }
    }

    fn cookie(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// One backend under test, on a fresh app.
struct Rig {
    server: Server,
    gates: Arc<Gates>,
    clock: Clock,
    /// Whether the backend reads `clock` (a manual one): Redis expires keys by its own.
    manual: bool,
    store: &'static str,
}

impl Rig {
    async fn new<B: SessionBackend>(backend: B, clock: Clock, store: &'static str) -> Rig {
        events();
        let gates = Arc::new(Gates::default());
        let manual = clock.is_manual();
        let server = Server::start(app(backend, clock.clone(), Arc::clone(&gates))).await;
        Rig {
            server,
            gates,
            clock,
            manual,
            store,
        }
    }

    async fn get(&self, path: &str, jar: &Jar) -> Reply {
        send(&plain(), &self.server.url(path), jar.cookie()).await
    }

    /// A request with the jar's cookie whose handler loads the session now and writes `key`
    /// when let go: what it answers, once let go.
    async fn start_slow_write(&self, key: &str, jar: &Jar) -> tokio::task::JoinHandle<Reply> {
        let url = self.server.url(&format!("/slow-write/{key}"));
        let cookie = jar.cookie().map(str::to_owned);
        let task = tokio::spawn(async move { send(&plain(), &url, cookie.as_deref()).await });
        self.gates.loaded.notified().await;
        task
    }

    /// A request with the jar's cookie whose handler loads the session only when let go.
    fn start_slow_read(&self, jar: &Jar) -> tokio::task::JoinHandle<Reply> {
        let url = self.server.url("/slow-read");
        let cookie = jar.cookie().map(str::to_owned);
        tokio::spawn(async move { send(&plain(), &url, cookie.as_deref()).await })
    }

    /// A jar holding a visitor's session (before any login), with `key` set.
    async fn visitor(&self, key: &str) -> Jar {
        let mut jar = Jar::default();
        jar.take(&self.get(&format!("/set/{key}"), &jar).await);
        assert!(jar.cookie().is_some(), "{}: no session cookie", self.store);
        jar
    }
}

async fn finish(rig: &Rig, task: tokio::task::JoinHandle<Reply>) -> Reply {
    rig.gates.go.notify_one();
    let reply = task.await.expect("the slow request");
    assert_eq!(reply.status, 200, "{}: {}", rig.store, reply.body);
    reply
}

/// Case 1: a request that loaded the session before a login and saves after it.
async fn a_write_overlapping_a_login_leaves_the_login_alone(rig: &Rig) {
    let mut jar = rig.visitor("cart").await;
    let slow = rig.start_slow_write("late", &jar).await;
    let login = rig.get("/login", &jar).await;
    login.assert_ok("in");
    jar.take(&login);
    let late = finish(rig, slow).await;
    assert!(
        late.set_cookies.is_empty(),
        "{}: the overlapping answer touched the cookie: {:?}",
        rig.store,
        late.set_cookies
    );
    jar.take(&late);
    rig.get("/whoami", &jar).await.assert_ok("ada cart,user");
}

/// Case 2: a request sent before a login answered and handled after it, reading only.
async fn a_read_handled_after_a_login_leaves_the_login_alone(rig: &Rig) {
    let mut jar = rig.visitor("cart").await;
    let slow = rig.start_slow_read(&jar);
    let login = rig.get("/login", &jar).await;
    jar.take(&login);
    let late = finish(rig, slow).await;
    assert_eq!(late.body, "anonymous");
    assert!(
        late.set_cookies.is_empty(),
        "{}: the late read expired the cookie: {:?}",
        rig.store,
        late.set_cookies
    );
    jar.take(&late);
    rig.get("/whoami", &jar).await.assert_ok("ada cart,user");
}

/// Case 3: a slow request across a logout and a new login.
async fn a_slow_request_across_logout_and_login_leaves_the_new_login_alone(rig: &Rig) {
    let mut jar = rig.visitor("cart").await;
    let login = rig.get("/login", &jar).await;
    jar.take(&login);
    let slow = rig.start_slow_write("late", &jar).await;
    let logout = rig.get("/logout", &jar).await;
    logout.assert_ok("out");
    jar.take(&logout);
    assert_eq!(
        jar.cookie(),
        None,
        "{}: the logout kept the cookie",
        rig.store
    );
    jar.take(&rig.get("/login", &jar).await);
    let late = finish(rig, slow).await;
    assert!(
        late.set_cookies.is_empty(),
        "{}: the slow answer touched the cookie: {:?}",
        rig.store,
        late.set_cookies
    );
    jar.take(&late);
    rig.get("/whoami", &jar).await.assert_ok("ada user");
}

/// Past the grace window, a cookie of an ended session is expired as any dead cookie.
async fn a_long_dead_cookie_is_still_expired(rig: &Rig) {
    let mut jar = rig.visitor("cart").await;
    let before_login = Jar(jar.0.clone());
    jar.take(&rig.get("/login", &jar).await);
    // Within the grace window: left alone.
    let soon = rig.get("/whoami", &before_login).await;
    soon.assert_ok("anonymous ");
    assert!(
        soon.set_cookies.is_empty(),
        "{}: {:?}",
        rig.store,
        soon.set_cookies
    );
    if !rig.manual {
        return;
    }
    rig.clock.advance(ENDED_GRACE + Duration::from_secs(1));
    let late = rig.get("/whoami", &before_login).await;
    late.assert_ok("anonymous ");
    assert!(
        late.cookie().is_expiry(),
        "{}: a long-dead cookie was kept: {:?}",
        rig.store,
        late.set_cookies
    );
}

/// What a burst of saves to one session came to.
struct Burst {
    took: Duration,
    failed: usize,
    /// How many times a save found another one in between and applied its changes again.
    retries: usize,
}

/// How many saves of `store` so far found another save in between.
fn retries(store: &str) -> usize {
    events()
        .matching(tracing::Level::DEBUG, "applying the changes again")
        .iter()
        .filter(|text| text.contains(&format!("store={store} ")))
        .count()
}

/// Case 5: `n` requests with one cookie, each setting its own key at the same moment. Every
/// request that succeeded kept its key.
async fn burst_of_saves(rig: &Rig, n: usize) -> Burst {
    let jar = rig.visitor("first").await;
    let cookie = jar.cookie().map(str::to_owned);
    let retried_before = retries(rig.store);
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let url = rig.server.url(&format!("/set/k{i:03}"));
            let cookie = cookie.clone();
            tokio::spawn(async move { (i, send(&plain(), &url, cookie.as_deref()).await) })
        })
        .collect();
    let mut succeeded = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (i, reply) = task.await.expect("a burst request");
        if reply.status == 200 {
            succeeded.push(format!("k{i:03}"));
        } else {
            failed += 1;
        }
    }
    let took = started.elapsed();
    let retries = retries(rig.store) - retried_before;
    let reply = rig.get("/whoami", &jar).await;
    let keys = reply.body.split_once(' ').map_or("", |(_, keys)| keys);
    let kept: Vec<&str> = keys.split(',').collect();
    for key in &succeeded {
        assert!(
            kept.contains(&key.as_str()),
            "{}: the key of a save that succeeded was lost: {key}",
            rig.store
        );
    }
    Burst {
        took,
        failed,
        retries,
    }
}

/// Case 4: device D moves its session to a new id again and again while device B signs out
/// the other devices; D must end up signed out. How many of `runs` runs it escaped.
async fn revocation_catches_a_moving_session(rig: &Rig, runs: usize) -> usize {
    let mut escapes = 0;
    for run in 0..runs {
        let user = format!("u{run}-{}", &sessionkit_core::generate_id()[..8]);
        let mut d = Jar::default();
        d.take(&rig.get(&format!("/login-as/{user}"), &d).await);
        let mut b = Jar::default();
        b.take(&rig.get(&format!("/login-as/{user}"), &b).await);
        // Four connections of D move its session again and again, sharing one jar.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let jar = Arc::new(std::sync::Mutex::new(Jar(d.0.clone())));
        let movers: Vec<_> = (0..4)
            .map(|_| {
                let url = rig.server.url("/rotate");
                let (stop, jar) = (Arc::clone(&stop), Arc::clone(&jar));
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let cookie = jar.lock().expect("the jar").0.clone();
                        let reply = send(&plain(), &url, cookie.as_deref()).await;
                        jar.lock().expect("the jar").take(&reply);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let revoked = rig.get("/revoke-others", &b).await;
        assert_eq!(revoked.status, 200, "{}: {}", rig.store, revoked.body);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for mover in movers {
            mover.await.expect("a mover");
        }
        let d = Jar(jar.lock().expect("the jar").0.clone());
        let after = rig.get("/whoami", &d).await;
        let devices = rig.get("/devices", &b).await;
        if !after.body.starts_with("anonymous") || devices.body != "1" {
            escapes += 1;
        }
    }
    escapes
}

async fn all_cases(rig: Rig) {
    logins_beyond_the_limit_end_the_least_recently_used(&rig).await;
    let escapes = revocation_catches_a_moving_session(&rig, 50).await;
    println!(
        "{}: a session moving during a revocation escaped {escapes} of 50 runs",
        rig.store
    );
    assert_eq!(
        escapes, 0,
        "{}: moving sessions escaped the revocation",
        rig.store
    );
    a_write_overlapping_a_login_leaves_the_login_alone(&rig).await;
    a_read_handled_after_a_login_leaves_the_login_alone(&rig).await;
    a_slow_request_across_logout_and_login_leaves_the_new_login_alone(&rig).await;
    a_long_dead_cookie_is_still_expired(&rig).await;
    let burst = burst_of_saves(&rig, 64).await;
    assert_eq!(
        burst.failed,
        0,
        "{}: saves of a burst of 64 failed: {:?}",
        rig.store,
        events().matching(tracing::Level::ERROR, "")
    );
    println!(
        "{}: a burst of 64 saves to one session took {:?}; {} saves applied again",
        rig.store, burst.took, burst.retries
    );
    // A figure, not a promise: past the backend's patience (5 s) a save fails.
    let burst = burst_of_saves(&rig, 256).await;
    println!(
        "{}: a burst of 256 saves to one session took {:?}, {} failed; {} saves applied again",
        rig.store, burst.took, burst.failed, burst.retries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory() {
    let clock = Clock::manual_from_now();
    let backend = InMemoryBackend::new().with_clock(clock.clone());
    all_cases(Rig::new(backend, clock, "memory").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("sessions-races:{}:", sessionkit_core::generate_id());
    let backend = sessionkit_redis::RedisBackend::from_url(&url)
        .expect("a Redis URL")
        .with_prefix(prefix.as_str());
    all_cases(Rig::new(backend, Clock::system(), "redis").await).await;
}

/// A table of the test's own, dropped at the end.
async fn sql<DB: sessionkit_sql::SqlDatabase>(url: &str, quote: char)
where
    for<'c> &'c mut DB::Connection: sessionkit_sql::sqlx::Executor<'c, Database = DB>,
{
    let table = common::own_table("races");
    let clock = Clock::manual_from_now();
    let backend = sessionkit_sql::SqlBackend::<DB>::builder_from_url(url)
        .with_table(&table)
        .with_clock(clock.clone())
        .with_max_connections(5)
        .build()
        .expect("a valid backend");
    backend.migrate().await.expect("migrate");
    all_cases(Rig::new(backend.clone(), clock, DB::LABEL).await).await;
    common::drop_table(&backend, &table, quote).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    let file = common::ScratchSqlite::new("races");
    sql::<sessionkit_sql::sqlx::Sqlite>(&file.url(), '"').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    sql::<sessionkit_sql::sqlx::Postgres>(&url, '"').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb() {
    let url =
        std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    sql::<sessionkit_sql::sqlx::MySql>(&url, '`').await;
}
