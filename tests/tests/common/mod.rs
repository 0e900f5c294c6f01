//! Helpers shared by the end-to-end tests: a real server on a loopback socket, the handlers
//! the tests call, backends that count or fail, a `Set-Cookie` parser and a tracing capture.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use reqwest::header::{COOKIE, HeaderValue, SET_COOKIE, VARY};
use reqwest::{Client, StatusCode};
use sessionkit_core::{Changes, Error, SessionBackend, SessionData, async_trait};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{LazySession, Session, SessionLayer};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// The server

/// An axum app served on `127.0.0.1:<free port>` in a background task; stopped when dropped.
pub struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(app: Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the test server failed");
        });
        Server { addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client that keeps cookies like a browser.
pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .build()
        .expect("a reqwest client")
}

/// A client without a cookie store: the test sends `Cookie` headers itself.
pub fn plain() -> Client {
    Client::builder().build().expect("a reqwest client")
}

// ---------------------------------------------------------------------------------------------
// Responses

/// What a test looks at in a response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<SetCookie>,
    pub vary: Vec<String>,
    pub body: String,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let set_cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| SetCookie::parse(v.to_str().expect("an ASCII Set-Cookie header")))
            .collect();
        let vary = response
            .headers()
            .get_all(VARY)
            .iter()
            .flat_map(|v| {
                v.to_str()
                    .expect("an ASCII Vary header")
                    .split(',')
                    .map(|item| item.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let body = response.text().await.expect("a text body");
        Reply {
            status,
            set_cookies,
            vary,
            body,
        }
    }

    /// The one `Set-Cookie` header of the response; fails the test when there is not exactly one.
    pub fn cookie(&self) -> &SetCookie {
        assert_eq!(
            self.set_cookies.len(),
            1,
            "expected exactly one Set-Cookie header, got {:?}",
            self.set_cookies
        );
        &self.set_cookies[0]
    }

    pub fn varies_on_cookie(&self) -> bool {
        self.vary.iter().any(|v| v.eq_ignore_ascii_case("cookie"))
    }

    /// Fails the test unless the response is a 200 with `body`.
    pub fn assert_ok(&self, body: &str) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "unexpected status, body {:?}",
            self.body
        );
        assert_eq!(self.body, body);
    }
}

/// GET `url`, sending `cookie` (a whole `Cookie` header value, such as `session=abc`) if given.
pub async fn send(client: &Client, url: &str, cookie: Option<&str>) -> Reply {
    let mut request = client.get(url);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    Reply::read(request.send().await.expect("the server answered")).await
}

/// GET `url` with a raw `Cookie` header value, which may hold bytes outside ASCII.
pub async fn send_raw_cookie(client: &Client, url: &str, cookie: &[u8]) -> Reply {
    let value = HeaderValue::from_bytes(cookie).expect("a header value");
    let response = client.get(url).header(COOKIE, value).send().await;
    Reply::read(response.expect("the server answered")).await
}

/// One parsed `Set-Cookie` header.
#[derive(Debug, Clone)]
pub struct SetCookie {
    pub raw: String,
    pub name: String,
    pub value: String,
    attributes: Vec<(String, Option<String>)>,
}

impl SetCookie {
    pub fn parse(raw: &str) -> SetCookie {
        let mut parts = raw.split(';');
        let pair = parts.next().unwrap_or_default();
        let (name, value) = pair.split_once('=').expect("a name=value pair");
        let attributes = parts
            .map(|part| match part.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                None => (part.trim().to_owned(), None),
            })
            .collect();
        SetCookie {
            raw: raw.to_owned(),
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            attributes,
        }
    }

    fn find(&self, name: &str) -> Option<&Option<String>> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether the attribute is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The attribute's value, if present with one.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.find(name).and_then(|v| v.as_deref())
    }

    /// The `Cookie` header value that sends this cookie back.
    pub fn pair(&self) -> String {
        format!("{}={}", self.name, self.value)
    }

    /// Whether this header removes the cookie from the client.
    pub fn is_expiry(&self) -> bool {
        self.value.is_empty() && self.attr("Max-Age") == Some("0")
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

pub async fn count(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

pub async fn read_n(session: Session) -> Result<String, Error> {
    Ok(session
        .get::<u64>("n")?
        .map_or_else(|| "none".to_owned(), |n| n.to_string()))
}

pub async fn put(session: Session, Path(value): Path<u64>) -> Result<&'static str, Error> {
    session.insert("n", value)?;
    Ok("put")
}

pub async fn clear(session: Session) -> Result<&'static str, Error> {
    session.clear()?;
    Ok("cleared")
}

pub async fn remove_n(session: Session) -> Result<&'static str, Error> {
    session.remove("n")?;
    Ok("removed")
}

/// Deletes without loading first: `delete()` works either way.
pub async fn delete(session: Session) -> Result<&'static str, Error> {
    session.delete().await?;
    Ok("deleted")
}

pub async fn regenerate(session: Session) -> Result<String, Error> {
    session.regenerate_id()?;
    Ok(session
        .get::<u64>("n")?
        .map_or_else(|| "none".to_owned(), |n| n.to_string()))
}

/// Insert and remove in one request: the session changed but ends empty.
pub async fn insert_then_remove(session: Session) -> Result<&'static str, Error> {
    session.insert("temp", "value")?;
    session.remove("temp")?;
    Ok("nothing kept")
}

pub async fn plain_text() -> &'static str {
    "plain"
}

/// Takes the session but never uses it.
pub async fn extract_only(_session: LazySession) -> &'static str {
    "extracted"
}

/// Takes the lazy session and never loads it.
pub async fn lazy_untouched(_session: LazySession) -> &'static str {
    "untouched"
}

/// Loads three times, writes, then reads back what it wrote.
pub async fn load_twice(lazy: LazySession) -> Result<String, Error> {
    let session = lazy.load().await?;
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    lazy.load().await?;
    let again = lazy.load().await?;
    Ok(again.get::<u64>("n")?.unwrap_or(0).to_string())
}

/// Counts without calling `load()`: only works with `autoload`.
pub async fn count_without_load(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

/// A handler that maps a failed load to its own response instead of using `?`.
pub async fn load_or_report(session: LazySession) -> (StatusCode, String) {
    match session.load().await {
        Ok(_) => (StatusCode::OK, "loaded".to_owned()),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage unavailable: {error}"),
        ),
    }
}

/// Every route the tests use, without a session layer.
pub fn routes() -> Router {
    Router::new()
        .route("/count", get(count))
        .route("/get", get(read_n))
        .route("/put/{value}", get(put))
        .route("/clear", get(clear))
        .route("/remove", get(remove_n))
        .route("/delete", get(delete))
        .route("/regenerate", get(regenerate))
        .route("/insert-then-remove", get(insert_then_remove))
        .route("/plain", get(plain_text))
        .route("/extract-only", get(extract_only))
        .route("/lazy", get(lazy_untouched))
        .route("/load-twice", get(load_twice))
        .route("/count-without-load", get(count_without_load))
        .route("/load-or-report", get(load_or_report))
}

/// [`routes`] behind `layer`.
pub fn app<B: SessionBackend>(layer: SessionLayer<B>) -> Router {
    routes().layer(layer)
}

// ---------------------------------------------------------------------------------------------
// Backends

#[derive(Default)]
struct Counts {
    reads: AtomicUsize,
    writes: AtomicUsize,
    removes: AtomicUsize,
    exists: AtomicUsize,
    ttls: Mutex<Vec<Option<Duration>>>,
}

/// An [`InMemoryBackend`] that counts the calls made to it. Clones share the store and counts.
#[derive(Clone, Default)]
pub struct CountingBackend {
    pub store: InMemoryBackend,
    counts: Arc<Counts>,
}

impl CountingBackend {
    pub fn new() -> Self {
        CountingBackend::default()
    }
    pub fn reads(&self) -> usize {
        self.counts.reads.load(Ordering::SeqCst)
    }
    pub fn writes(&self) -> usize {
        self.counts.writes.load(Ordering::SeqCst)
    }
    pub fn removes(&self) -> usize {
        self.counts.removes.load(Ordering::SeqCst)
    }
    /// Every call of any kind.
    pub fn calls(&self) -> usize {
        self.reads() + self.writes() + self.removes() + self.counts.exists.load(Ordering::SeqCst)
    }
    /// The `ttl` of every write, in order.
    pub fn ttls(&self) -> Vec<Option<Duration>> {
        self.counts.ttls.lock().expect("the ttl log").clone()
    }
}

#[async_trait]
impl SessionBackend for CountingBackend {
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        self.counts.reads.fetch_add(1, Ordering::SeqCst);
        self.store.read(id).await
    }
    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        self.counts.writes.fetch_add(1, Ordering::SeqCst);
        self.counts.ttls.lock().expect("the ttl log").push(ttl);
        self.store.create(data, ttl).await
    }
    /// A save of a loaded session's changes: counted as a write.
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        self.counts.writes.fetch_add(1, Ordering::SeqCst);
        self.counts.ttls.lock().expect("the ttl log").push(ttl);
        self.store.apply(id, session, changes, ttl).await
    }
    async fn remove(&self, id: &str) -> Result<(), Error> {
        self.counts.removes.fetch_add(1, Ordering::SeqCst);
        self.store.remove(id).await
    }
    fn generate_id(&self) -> String {
        self.store.generate_id()
    }
}

impl CountingBackend {
    /// Whether a live record is stored under `id`, counted as a call.
    pub async fn exists(&self, id: &str) -> Result<bool, Error> {
        self.counts.exists.fetch_add(1, Ordering::SeqCst);
        self.store.exists(id).await
    }
}

/// The detail a failing backend puts in its errors; it must never reach a client.
pub const BACKEND_SECRET: &str = "db-host-10.0.0.7 password rejected";

/// An [`InMemoryBackend`] whose reads, writes or removes fail on demand. Clones share switches.
#[derive(Clone, Default)]
pub struct FailingBackend {
    pub store: InMemoryBackend,
    fail_reads: Arc<AtomicBool>,
    fail_writes: Arc<AtomicBool>,
    fail_removes: Arc<AtomicBool>,
}

impl FailingBackend {
    pub fn new() -> Self {
        FailingBackend::default()
    }
    pub fn fail_reads(&self, fail: bool) {
        self.fail_reads.store(fail, Ordering::SeqCst);
    }
    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }
    pub fn fail_removes(&self, fail: bool) {
        self.fail_removes.store(fail, Ordering::SeqCst);
    }
    pub fn fail_everything(&self) {
        self.fail_reads(true);
        self.fail_writes(true);
        self.fail_removes(true);
    }
}

fn failure(operation: &str) -> Error {
    Error::backend(format!(
        "test backend refused to {operation}: {BACKEND_SECRET}"
    ))
}

#[async_trait]
impl SessionBackend for FailingBackend {
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(failure("read"));
        }
        self.store.read(id).await
    }
    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(failure("write"));
        }
        self.store.create(data, ttl).await
    }
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(failure("write"));
        }
        // A save that empties the session removes the record.
        if session.is_empty() && self.fail_removes.load(Ordering::SeqCst) {
            return Err(failure("remove"));
        }
        self.store.apply(id, session, changes, ttl).await
    }
    async fn remove(&self, id: &str) -> Result<(), Error> {
        if self.fail_removes.load(Ordering::SeqCst) {
            return Err(failure("remove"));
        }
        self.store.remove(id).await
    }
}

impl FailingBackend {
    /// Whether a live record is stored under `id`; fails with the reads.
    pub async fn exists(&self, id: &str) -> Result<bool, Error> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(failure("check"));
        }
        self.store.exists(id).await
    }
}

// ---------------------------------------------------------------------------------------------
// Tracing capture

/// A tracing subscriber that records every event as `(level, "field=value ...")`.
///
/// Install it with `tracing::subscriber::set_default` in a current-thread runtime test: the
/// server's tasks then run on the test's thread and report to it.
#[derive(Clone, Default)]
pub struct CapturedEvents {
    events: Arc<Mutex<Vec<(tracing::Level, String)>>>,
    next_span: Arc<AtomicUsize>,
}

impl CapturedEvents {
    pub fn events(&self) -> Vec<(tracing::Level, String)> {
        self.events.lock().expect("the event log").clone()
    }

    /// The captured events at `level` whose text contains `needle`.
    pub fn matching(&self, level: tracing::Level, needle: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|(l, text)| *l == level && text.contains(needle))
            .map(|(_, text)| text)
            .collect()
    }
}

struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let _ = write!(self.0, "{}={} ", field.name(), value);
    }
}

impl tracing::Subscriber for CapturedEvents {
    fn enabled(&self, _metadata: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let n = self.next_span.fetch_add(1, Ordering::SeqCst) as u64;
        tracing::span::Id::from_u64(n + 1)
    }
    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = FieldText(String::new());
        event.record(&mut text);
        self.events
            .lock()
            .expect("the event log")
            .push((*event.metadata().level(), text.0));
    }
    fn enter(&self, _span: &tracing::span::Id) {}
    fn exit(&self, _span: &tracing::span::Id) {}
}

// ---------------------------------------------------------------------------------------------
// SQL scratch space

/// A table name of the test's own: `<label>_<10 random characters>`.
pub fn own_table(label: &str) -> String {
    format!(
        "{label}_{}",
        &sessionkit_core::generate_id()[..10]
            .to_lowercase()
            .replace('-', "_")
    )
}

/// Drop a table of the test's own (`quote` quotes identifiers in the database's dialect).
pub async fn drop_table<DB: sessionkit_sql::SqlDatabase, S>(
    backend: &sessionkit_sql::SqlBackend<DB, S>,
    table: &str,
    quote: char,
) where
    for<'c> &'c mut DB::Connection: sessionkit_sql::sqlx::Executor<'c, Database = DB>,
{
    let drop = format!("DROP TABLE {quote}{table}{quote}");
    sessionkit_sql::sqlx::raw_sql(&drop)
        .execute(backend.pool())
        .await
        .expect("drop the test's table");
}

/// A SQLite file of the test's own in the temporary directory, removed (with its `-wal` and
/// `-shm` files) when dropped.
pub struct ScratchSqlite(std::path::PathBuf);

impl ScratchSqlite {
    pub fn new(label: &str) -> Self {
        ScratchSqlite(std::env::temp_dir().join(format!(
            "sessions-{label}-{}.db",
            &sessionkit_core::generate_id()[..12]
        )))
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for ScratchSqlite {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}
