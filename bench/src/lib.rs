//! What one request costs through our session layer, a bare axum route and tower-sessions.
//!
//! Shared by the instruction-count binary (`src/bin/calls.rs`, run under callgrind) and the
//! criterion timing bench (`benches/time.rs`), so both measure exactly the same requests.
//!
//! Every variant serves the same three routes, one per [`Scenario`]:
//!
//! | route   | handler |
//! |---------|---------|
//! | `/`     | returns `"ok"`; never touches the session |
//! | `/read` | loads the session, reads the `u64` under `"n"`, returns it with `to_string()` |
//! | `/incr` | loads the session, reads `"n"`, stores `n + 1`, returns it with `to_string()` |
//!
//! The bare variant's `/read` and `/incr` do the same `to_string()` (and an atomic increment for
//! `/incr`) on a value that comes from nowhere, so the difference to bare is the session's cost
//! alone.
//!
//! The cookie variants keep the whole session in the cookie (`sessionkit-cookie`, signed or
//! private); their "sessions" are the sealed cookie values themselves, pre-created by a write
//! request each. Their write requests keep sending the pre-created value (a client would send
//! the new one back): each write opens that value and seals the incremented data anew.
//!
//! Routers are finalized with `.with_state(())`, as `axum::serve` does, and every request goes
//! through `service.clone().oneshot(request)`, as `axum::serve` (hyper-util's
//! `TowerToHyperService`) does per request.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use sessionkit_cookie::CookieBackend;
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{SessionLayer, SessionMiddleware};
use std::cell::Cell;
use std::collections::HashSet;
use std::convert::Infallible;
use std::fmt;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_sessions::{MemoryStore, SessionManagerLayer};

pub mod counting;
pub mod proxy;
pub mod statements;
pub mod stores;

/// How many distinct sessions each variant gets before measuring; requests cycle through them.
pub const SESSIONS: usize = 1024;

/// Requests run before measuring, to fill caches, maps and allocator pools.
pub const WARMUP: usize = 200;

/// The secret of the cookie variants (a fixed one, so every run seals the same way).
const COOKIE_SECRET: &[u8] =
    b"sessions-bench: a fixed secret of at least 32 bytes, for benchmarks only";

/// The stacks under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The routes alone, no session layer.
    Bare,
    /// Our `SessionLayer` + `InMemoryBackend`, mounted with `Router::layer`.
    Ours,
    /// tower-sessions 0.15 with its `MemoryStore`, mounted with `Router::layer`.
    TowerSessions,
    /// Our layer configured as a typical app does (`with_cookie_name`, `with_max_age(14
    /// days)`), + `InMemoryBackend`, mounted with `Router::layer`.
    OursConfigured,
    /// Our layer wrapped around the finished router: `SessionLayer::layer(router)`.
    OursAround,
    /// Our `SessionLayer` + `CookieBackend::signed` (HMAC-SHA256), mounted with `Router::layer`.
    OursCookieSigned,
    /// Our `SessionLayer` + `CookieBackend::private` (AES-256-GCM), mounted with `Router::layer`.
    OursCookiePrivate,
    /// The bare routes with a layer around the finished router that does nothing but wrap
    /// its future: the floor of any layer around a router (not a session layer).
    EmptyAround,
    /// The bare routes with the do-nothing layer mounted by `Router::layer`: what axum spends
    /// on any layer mounted that way (not a session layer). Only in a build with feature
    /// `floor`, and not in [`Variant::ALL`]: one more layer type under `Router::layer` changes
    /// how the compiler inlines axum's routing code for every variant of the binary.
    EmptyLayer,
}

impl Variant {
    /// Every variant of the default build, in table order.
    pub const ALL: [Variant; 8] = [
        Variant::Bare,
        Variant::Ours,
        Variant::TowerSessions,
        Variant::OursConfigured,
        Variant::OursAround,
        Variant::OursCookieSigned,
        Variant::OursCookiePrivate,
        Variant::EmptyAround,
    ];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Ours => "ours",
            Variant::TowerSessions => "tower-sessions",
            Variant::OursConfigured => "ours-configured",
            Variant::OursAround => "ours-around",
            Variant::OursCookieSigned => "ours-cookie-signed",
            Variant::OursCookiePrivate => "ours-cookie-private",
            Variant::EmptyAround => "empty-around",
            Variant::EmptyLayer => "empty-layer",
        }
    }

    /// The variant called `name`.
    pub fn parse(name: &str) -> Option<Variant> {
        Variant::ALL
            .into_iter()
            .chain([Variant::EmptyLayer])
            .find(|v| v.name() == name)
    }

    /// The session cookie's name, for variants that have one.
    fn cookie_name(self) -> &'static str {
        match self {
            Variant::Bare
            | Variant::Ours
            | Variant::OursAround
            | Variant::OursCookieSigned
            | Variant::OursCookiePrivate
            | Variant::EmptyAround
            | Variant::EmptyLayer => "session",
            Variant::TowerSessions | Variant::OursConfigured => "id",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// 1. No cookie; the handler does not use the session.
    NoCookie,
    /// 2. A valid cookie; the handler loads the session and reads one `u64`.
    Read,
    /// 3. A valid cookie; the handler increments a counter in the session (a write per request).
    Write,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 3] = [Scenario::NoCookie, Scenario::Read, Scenario::Write];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::NoCookie => "no-cookie",
            Scenario::Read => "read",
            Scenario::Write => "write",
        }
    }

    /// The scenario called `name`.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    pub(crate) fn path(self) -> &'static str {
        match self {
            Scenario::NoCookie => "/",
            Scenario::Read => "/read",
            Scenario::Write => "/incr",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

pub(crate) async fn plain() -> &'static str {
    "ok"
}

static BARE_COUNTER: AtomicU64 = AtomicU64::new(0);

async fn bare_read() -> String {
    black_box(1u64).to_string()
}

async fn bare_incr() -> String {
    (BARE_COUNTER.fetch_add(1, Ordering::Relaxed) + 1).to_string()
}

pub(crate) async fn ours_read(
    session: sessionkit_tower::Session,
) -> Result<String, sessionkit_tower::Error> {
    Ok(session.get::<u64>("n")?.unwrap_or(0).to_string())
}

pub(crate) async fn ours_incr(
    session: sessionkit_tower::Session,
) -> Result<String, sessionkit_tower::Error> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn ts_read(session: tower_sessions::Session) -> Result<String, StatusCode> {
    let n: Option<u64> = session
        .get("n")
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(n.unwrap_or(0).to_string())
}

async fn ts_incr(session: tower_sessions::Session) -> Result<String, StatusCode> {
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

pub(crate) fn bare_routes() -> Router {
    Router::new()
        .route("/", get(plain))
        .route("/read", get(bare_read))
        .route("/incr", get(bare_incr))
}

/// Our routes: `/` (untouched), `/read` and `/incr` (a write).
pub fn our_routes() -> Router {
    Router::new()
        .route("/", get(plain))
        .route("/read", get(ours_read))
        .route("/incr", get(ours_incr))
}

fn ts_routes() -> Router {
    Router::new()
        .route("/", get(plain))
        .route("/read", get(ts_read))
        .route("/incr", get(ts_incr))
}

// ---------------------------------------------------------------------------------------------
// Services

/// The finished service of one variant.
#[derive(Clone)]
pub enum App {
    /// A router (bare, or with a session layer inside it via `Router::layer`).
    Router(Router),
    /// Our layer around a finished router.
    Around(SessionMiddleware<Router, InMemoryBackend>),
    /// The do-nothing layer around a finished router.
    Empty(empty::Empty<Router>),
}

impl App {
    /// The service of `variant`, finalized as `axum::serve` finalizes it.
    pub fn new(variant: Variant) -> App {
        match variant {
            Variant::Bare => App::Router(bare_routes().with_state(())),
            Variant::Ours => App::Router(
                our_routes()
                    .layer(SessionLayer::new(InMemoryBackend::new()))
                    .with_state(()),
            ),
            Variant::TowerSessions => App::Router(
                ts_routes()
                    .layer(SessionManagerLayer::new(MemoryStore::default()))
                    .with_state(()),
            ),
            Variant::OursConfigured => App::Router(
                our_routes()
                    .layer(
                        SessionLayer::builder(InMemoryBackend::new())
                            .with_cookie_name("id")
                            .with_max_age(std::time::Duration::from_secs(14 * 24 * 60 * 60))
                            .build()
                            .expect("a valid configuration"),
                    )
                    .with_state(()),
            ),
            Variant::OursAround => App::Around(
                SessionLayer::new(InMemoryBackend::new()).layer(our_routes().with_state(())),
            ),
            Variant::OursCookieSigned => App::Router(
                our_routes()
                    .layer(SessionLayer::new(
                        CookieBackend::signed(COOKIE_SECRET).expect("a valid secret"),
                    ))
                    .with_state(()),
            ),
            Variant::EmptyAround => App::Empty(empty::Empty(bare_routes().with_state(()))),
            #[cfg(feature = "floor")]
            Variant::EmptyLayer => {
                App::Router(bare_routes().layer(empty::EmptyLayer).with_state(()))
            }
            #[cfg(not(feature = "floor"))]
            Variant::EmptyLayer => {
                panic!("variant empty-layer needs a build with --features floor")
            }
            Variant::OursCookiePrivate => App::Router(
                our_routes()
                    .layer(SessionLayer::new(
                        CookieBackend::private(COOKIE_SECRET).expect("a valid secret"),
                    ))
                    .with_state(()),
            ),
        }
    }

    /// Send one request, as `axum::serve` does: clone the service, then `oneshot`.
    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        match self {
            App::Router(router) => send(router, request).await,
            App::Around(service) => send(service, request).await,
            App::Empty(service) => send(service, request).await,
        }
    }

    /// Send every request in turn, checking only the status; returns how long it took.
    pub async fn run(&self, requests: Vec<Request<Body>>) -> Duration {
        match self {
            App::Router(router) => run(router, requests).await,
            App::Around(service) => run(service, requests).await,
            App::Empty(service) => run(service, requests).await,
        }
    }
}

async fn send<S>(service: &S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    match service.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

async fn run<S>(service: &S, requests: Vec<Request<Body>>) -> Duration
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    let start = Instant::now();
    for request in requests {
        let response = send(service, request).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "a measured request failed"
        );
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// Fixture

/// One variant and scenario, ready to measure: the service and the cookies of its sessions.
pub struct Fixture {
    /// The variant measured.
    pub variant: Variant,
    /// The scenario measured.
    pub scenario: Scenario,
    /// The service.
    pub app: App,
    /// `Cookie` header values, one per pre-created session (empty for the no-cookie scenario).
    cookies: Vec<HeaderValue>,
    next: Cell<usize>,
}

impl Fixture {
    /// Build the service and pre-create [`SESSIONS`] sessions (by sending a counting request
    /// without a cookie and keeping the cookie it sets: a session id, or for the cookie
    /// variants the sealed session itself, all distinct), then run [`WARMUP`] requests and check
    /// that they behave.
    ///
    /// # Panics
    ///
    /// When the stack does not behave as the scenario expects (no cookie set, value not read).
    pub async fn new(variant: Variant, scenario: Scenario) -> Fixture {
        let app = App::new(variant);
        let mut cookies = Vec::new();
        if scenario != Scenario::NoCookie {
            let mut seen = HashSet::new();
            let mut attempts = 0usize;
            while cookies.len() < SESSIONS {
                attempts += 1;
                assert!(
                    attempts <= 1000 * SESSIONS,
                    "{variant}: could not create {SESSIONS} distinct sessions"
                );
                let cookie = if matches!(
                    variant,
                    Variant::Bare | Variant::EmptyAround | Variant::EmptyLayer
                ) {
                    // Same shape as our cookie (32 characters of base64), so the request
                    // carries the same header bytes; nothing reads it.
                    format!("{}={:0>32}", variant.cookie_name(), cookies.len())
                } else {
                    let response = app.send(request(Scenario::Write, None)).await;
                    assert_eq!(response.status(), StatusCode::OK);
                    session_cookie(&response, variant.cookie_name())
                };
                // A signed cookie session is deterministic: two created within the same
                // millisecond (its issue time) are the same value. Try again until distinct.
                if seen.insert(cookie.clone()) {
                    cookies.push(HeaderValue::try_from(cookie).expect("a valid header value"));
                } else {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
        let fixture = Fixture {
            variant,
            scenario,
            app,
            cookies,
            next: Cell::new(0),
        };
        fixture.warm_up().await;
        fixture
    }

    async fn warm_up(&self) {
        for _ in 0..WARMUP {
            let response = self.app.send(self.next_request()).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{self}: warm-up request failed"
            );
            let set_cookie = response.headers().contains_key(SET_COOKIE);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("a body");
            let body = std::str::from_utf8(&body).expect("a text body");
            match (self.variant, self.scenario) {
                (_, Scenario::NoCookie) => {
                    assert_eq!(body, "ok");
                    assert!(!set_cookie, "{self}: an untouched session set a cookie");
                }
                (Variant::Bare | Variant::EmptyAround | Variant::EmptyLayer, _) => {
                    assert!(!set_cookie)
                }
                (_, Scenario::Read) => {
                    // Every session was created with n = 1.
                    assert_eq!(body, "1", "{self}: the stored value was not read");
                    assert!(!set_cookie, "{self}: a read-only request set a cookie");
                }
                (_, Scenario::Write) => {
                    let n: u64 = body.parse().expect("a number");
                    assert!(n >= 2, "{self}: the stored counter was not found");
                    assert!(set_cookie, "{self}: a changed session set no cookie");
                }
            }
        }
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
}

impl fmt::Display for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.variant, self.scenario)
    }
}

pub(crate) fn request(scenario: Scenario, cookie: Option<HeaderValue>) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = Uri::from_static(scenario.path());
    if let Some(cookie) = cookie {
        request.headers_mut().insert(COOKIE, cookie);
    }
    request
}

/// The `name=value` pair of the session cookie a response sets.
pub(crate) fn session_cookie(response: &Response<Body>, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.split_once('=').is_some_and(|(k, _)| k.trim() == name))
        .unwrap_or_else(|| panic!("no `{name}` cookie was set"))
        .trim()
        .to_owned()
}

/// A layer that only wraps the inner future: what any layer around a router pays at least.
pub mod empty {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower::Service;

    /// The service.
    #[derive(Clone)]
    pub struct Empty<S>(pub S);

    /// The layer that makes it, for `Router::layer`.
    #[derive(Clone)]
    pub struct EmptyLayer;

    impl<S> tower::Layer<S> for EmptyLayer {
        type Service = Empty<S>;
        fn layer(&self, inner: S) -> Empty<S> {
            Empty(inner)
        }
    }

    pin_project_lite::pin_project! {
        /// Its future: the inner one, polled through.
        pub struct EmptyFuture<F> { #[pin] inner: F }
    }

    impl<F: Future> Future for EmptyFuture<F> {
        type Output = F::Output;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.project().inner.poll(cx)
        }
    }

    impl<S: Service<R>, R> Service<R> for Empty<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = EmptyFuture<S::Future>;
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.0.poll_ready(cx)
        }
        fn call(&mut self, req: R) -> Self::Future {
            EmptyFuture {
                inner: self.0.call(req),
            }
        }
    }
}
