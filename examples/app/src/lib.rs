//! The main example of sessionkit: a small axum app with a page that counts
//! your visits, lets you log in with a name, shows it, and logs you out.
//!
//! ```sh
//! cargo run -p sessionkit-app                        # cookie sessions: no server needed
//! cargo run -p sessionkit-app -- --backend sqlite    # a sessions.db file: survives restarts
//! SESSION_BACKEND=redis cargo run -p sessionkit-app  # the flag or the variable, either works
//! ```
//!
//! It serves on <http://127.0.0.1:3000> (`ADDR` overrides) and prints the URL on start.
//! The page is plain HTML forms: it works with JavaScript off.
//!
//! What it shows of the library:
//!
//! - the counter: `get`, `insert` on the loaded `Session`, saved when the response goes out;
//! - logging in: [`Session::regenerate_id`] before the name is stored, the defence against
//!   session fixation;
//! - logging out: [`Session::delete`], which removes the record and expires the cookie;
//! - "sign out of other devices": the login binds the session to its user
//!   ([`Session::set_user`]); the page lists that user's sessions
//!   ([`Session::user_sessions`]) and a button ends all but this one
//!   ([`Session::revoke_other_sessions`]). Server-side backends only: with signed cookies no
//!   server knows a user's sessions, and the page says so;
//! - one [`router`] for every backend: the layer is generic over it, so the choice is made
//!   once, in [`build`].
//!
//! # Settings
//!
//! | flag / variable | default | meaning |
//! |---|---|---|
//! | `--backend NAME` / `SESSION_BACKEND` | `cookie` | `cookie`, `sqlite`, `memory`, `redis` or `postgres` |
//! | `ADDR` | `127.0.0.1:3000` | where to listen |
//! | `SESSION_SECRET` | generated, with a warning | the cookie backend's key: 32 bytes or more |
//! | `SQLITE_PATH` | `sessions.db` | the SQLite file, created when missing |
//! | `REDIS_URL` | `redis://127.0.0.1:6379` | the Redis server |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/test` | the PostgreSQL database |
//! | `SESSION_TABLE` | `sessions` | the SQL table (SQLite and PostgreSQL), created when missing |
//! | `SESSION_MAX_AGE` | 14 days | the cookie's lifetime in seconds; `0` makes a browser-session cookie |
//! | `SESSION_SECURE` | on, but off on a loopback address | `0` turns `Secure` off elsewhere too (with a warning at startup): only for plain-HTTP development |
//! | `RUST_LOG` | `warn` | what the log shows (a `tracing` env filter): failed saves, corrupt records |
//!
//! The login form has a "Remember me" checkbox: ticked, the login lasts 30 days without a
//! visit; not ticked, it lasts as long as the browser stays open (a cookie without
//! `Max-Age`). Sessions end 30 days after their creation at the latest (an absolute limit), and a new
//! session's record lives 15 minutes until its client comes back (a probation: a flood of
//! one-shot visits leaves nothing long-lived behind).
//!
//! # Features
//!
//! This package has no Cargo features: every backend is compiled in.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use axum::Form;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sessionkit_cookie::CookieBackend;
use sessionkit_memory::InMemoryBackend;
use sessionkit_redis::RedisBackend;
use sessionkit_sql::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sessionkit_sql::{CleanupTask, PostgresBackend, SqliteBackend};
use sessionkit_tower::{Error, Lifetime, Session, SessionBackend, SessionLayer};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Where the app listens unless `ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";
/// The SQLite file used unless `SQLITE_PATH` names another.
pub const DEFAULT_SQLITE_PATH: &str = "sessions.db";
/// The Redis server used unless `REDIS_URL` names another.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The PostgreSQL database used unless `DATABASE_URL` names another (the test suite's).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The longest name the login form accepts, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// How long a server-side record lives when the cookie gives it no lifetime (a
/// browser-session cookie): without it, sessions nobody ends would stay stored forever.
const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// How often the SQL backends delete expired rows.
const CLEANUP_EVERY: Duration = Duration::from_secs(10 * 60);

/// The command-line help.
pub const USAGE: &str = "\
usage: sessionkit-app [--backend cookie|sqlite|memory|redis|postgres]

Serves a visit counter with a login form on http://127.0.0.1:3000.

  --backend NAME     where sessions are stored (or SESSION_BACKEND; default: cookie)
                       cookie    signed cookies, nothing stored on the server
                       sqlite    a SQLite file (SQLITE_PATH, default sessions.db)
                       memory    this process's memory: gone on restart
                       redis     Redis at REDIS_URL (default redis://127.0.0.1:6379)
                       postgres  PostgreSQL at DATABASE_URL
  -h, --help         this help

Environment: ADDR (default 127.0.0.1:3000), SESSION_SECRET (cookie backend, 32+ bytes),
SESSION_MAX_AGE (seconds; 0 = a browser-session cookie), SESSION_SECURE (default: on, except
on a loopback ADDR; 0 turns it off), RUST_LOG (default: warn).
";

/// Where sessions are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Signed cookies (`sessionkit-cookie`), the default: nothing stored on the server.
    #[default]
    Cookie,
    /// A SQLite file (`sessionkit-sql`): survives restarts, no server needed.
    Sqlite,
    /// The process's memory (`sessionkit-memory`): gone on restart.
    Memory,
    /// A Redis server (`sessionkit-redis`).
    Redis,
    /// A PostgreSQL database (`sessionkit-sql`).
    Postgres,
}

impl BackendKind {
    /// Every backend, in the order the help lists them.
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Cookie,
        BackendKind::Sqlite,
        BackendKind::Memory,
        BackendKind::Redis,
        BackendKind::Postgres,
    ];

    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cookie => "cookie",
            BackendKind::Sqlite => "sqlite",
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
            BackendKind::Postgres => "postgres",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let wanted = s.trim().to_ascii_lowercase();
        BackendKind::ALL
            .into_iter()
            .find(|kind| kind.name() == wanted)
            .ok_or_else(|| {
                format!("unknown backend {s:?}: choose cookie, sqlite, memory, redis or postgres")
            })
    }
}

/// The app's settings, read from the command line and the environment (see the
/// [crate docs](crate#settings)).
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Where sessions are stored.
    pub backend: BackendKind,
    /// Where to listen.
    pub addr: String,
    /// The cookie's lifetime: `None` keeps the layer's default (14 days), zero makes a
    /// browser-session cookie.
    pub max_age: Option<Duration>,
    /// `SESSION_SECURE` as given: `None` when unset (see [`Config::secure_cookie`]).
    pub secure: Option<bool>,
    /// The cookie backend's secret; `None` generates one for this run.
    pub secret: Option<String>,
    /// The SQLite file.
    pub sqlite_path: String,
    /// The Redis server.
    pub redis_url: String,
    /// The PostgreSQL database.
    pub database_url: String,
    /// The SQL table sessions are kept in.
    pub table: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret and the URLs (which may hold passwords) stay out of logs.
        f.debug_struct("Config")
            .field("backend", &self.backend)
            .field("addr", &self.addr)
            .field("max_age", &self.max_age)
            .field("secure", &self.secure)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("sqlite_path", &self.sqlite_path)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The settings of this process: its arguments and environment. `Ok(None)` when help was
    /// asked for; `Err` explains what is wrong.
    pub fn from_env() -> Result<Option<Config>, String> {
        Config::parse(std::env::args().skip(1), |name| std::env::var(name).ok())
    }

    /// The settings from `args` (without the program name) and the variables `env` looks up.
    /// `--backend` wins over `SESSION_BACKEND`.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Config>, String> {
        let mut backend = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-h" | "--help" => return Ok(None),
                "--backend" => {
                    let value = args.next().ok_or("--backend needs a value")?;
                    backend = Some(value.parse()?);
                }
                other => match other.strip_prefix("--backend=") {
                    Some(value) => backend = Some(value.parse()?),
                    None => return Err(format!("unexpected argument {other:?}")),
                },
            }
        }
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let backend = match backend {
            Some(kind) => kind,
            None => env("SESSION_BACKEND")
                .map(|value| value.parse())
                .transpose()?
                .unwrap_or_default(),
        };
        let max_age = env("SESSION_MAX_AGE")
            .map(|value| {
                value
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| {
                        format!("SESSION_MAX_AGE must be a number of seconds, not {value:?}")
                    })
            })
            .transpose()?;
        let secure = match env("SESSION_SECURE").as_deref().map(str::trim) {
            None => None,
            Some("0" | "false" | "no" | "off") => Some(false),
            Some("1" | "true" | "yes" | "on") => Some(true),
            Some(other) => return Err(format!("SESSION_SECURE must be 1 or 0, not {other:?}")),
        };
        Ok(Some(Config {
            backend,
            addr: env("ADDR").unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
            max_age,
            secure,
            secret: env("SESSION_SECRET"),
            sqlite_path: env("SQLITE_PATH").unwrap_or_else(|| DEFAULT_SQLITE_PATH.to_owned()),
            redis_url: env("REDIS_URL").unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
            database_url: env("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            table: env("SESSION_TABLE").unwrap_or_else(|| sessionkit_sql::DEFAULT_TABLE.to_owned()),
        }))
    }
}

/// The app, built for one backend.
pub struct App {
    /// The routes, sessions included: serve them with `axum::serve`.
    pub router: Router,
    /// Where sessions are stored, in words (printed on start and shown on the page).
    pub storage: String,
    /// The SQL backends' expired-row cleanup; it stops when the app is dropped.
    cleanup: Option<CleanupTask>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("storage", &self.storage)
            .field("cleanup", &self.cleanup.is_some())
            .finish_non_exhaustive()
    }
}

/// How long a session lasts at most after its creation, however active.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How long a session (an ordinary login included) lives on the server without a visit,
/// unless it has an inactivity window of its own (a remembered login's 30 days).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// How long a new session's record lives until its client comes back.
pub const PROBATION: Duration = Duration::from_secs(15 * 60);

impl Config {
    /// Whether the cookie is marked `Secure`: as `SESSION_SECURE` says, else on, except when
    /// the app listens on a loopback address (plain http://127.0.0.1 in development, where
    /// clients other than Chromium would not send a `Secure` cookie back).
    pub fn secure_cookie(&self) -> bool {
        self.secure.unwrap_or_else(|| !self.on_loopback())
    }

    /// Whether `addr` is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
    pub fn on_loopback(&self) -> bool {
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// A warning to print at startup, when the cookie is sent without `Secure` on an address
    /// other clients can reach.
    pub fn insecure_warning(&self) -> Option<String> {
        (!self.secure_cookie() && !self.on_loopback()).then(|| {
            format!(
                "SESSION_SECURE=0 on {}: the session cookie travels without `Secure`, so any \
                 plain-HTTP request to this host exposes it; use it for development only",
                self.addr
            )
        })
    }
}

/// The session layer for `backend`, with the options that do not depend on the backend.
///
/// # Errors
///
/// Options the layer refuses, as [`Error::Config`].
pub fn sessions<B: SessionBackend>(backend: B, config: &Config) -> Result<SessionLayer<B>, Error> {
    // `Secure` cookies are only sent over HTTPS: on unless the app listens on loopback (see
    // `Config::secure_cookie`).
    let mut layer = SessionLayer::builder(backend)
        .with_secure(config.secure_cookie())
        .with_absolute_timeout(ABSOLUTE_TIMEOUT)
        .with_idle_timeout(IDLE_TIMEOUT)
        .with_probation(PROBATION);
    if let Some(max_age) = config.max_age {
        layer = layer.with_max_age(max_age);
    }
    layer.build()
}

/// Build the app for `config`'s backend: connect, create the SQL table when missing, start
/// the SQL cleanup task. Must run inside a tokio runtime.
///
/// # Errors
///
/// A backend that cannot be reached or set up, or a bad secret, with a message that says
/// which and what to do.
pub async fn build(config: &Config) -> Result<App, Error> {
    let mut cleanup = None;
    let (router, storage) = match config.backend {
        BackendKind::Cookie => {
            let secret = match &config.secret {
                Some(secret) => secret.clone(),
                None => {
                    eprintln!(
                        "sessionkit-app: warning: SESSION_SECRET is not set, so this run signs \
                         cookies with a random key and every session ends when the app stops. \
                         Set SESSION_SECRET to 32 or more random bytes (for example \
                         `openssl rand -base64 48`) to keep them."
                    );
                    CookieBackend::generate_secret()
                }
            };
            let storage = "signed cookies (nothing stored on the server)";
            let layer = sessions(CookieBackend::signed(secret)?, config)?;
            (router(layer, storage), storage.to_owned())
        }
        BackendKind::Memory => {
            let storage = "this process's memory (gone on restart)";
            let layer = sessions(InMemoryBackend::new().with_max_sessions(100_000), config)?;
            (router(layer, storage), storage.to_owned())
        }
        BackendKind::Sqlite => {
            let options = SqliteConnectOptions::new()
                .filename(&config.sqlite_path)
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new().connect_lazy_with(options);
            let backend = SqliteBackend::builder(pool)
                .with_table(&config.table)
                .with_expire(ABANDONED_AFTER)
                .build()?;
            backend.migrate().await?;
            cleanup = Some(backend.spawn_cleanup(CLEANUP_EVERY)?);
            let storage = format!("SQLite file {}", config.sqlite_path);
            let layer = sessions(backend, config)?;
            (router(layer, &storage), storage)
        }
        BackendKind::Postgres => {
            let backend = PostgresBackend::builder_from_url(&config.database_url)
                .with_table(&config.table)
                .with_expire(ABANDONED_AFTER)
                .build()?;
            backend.migrate().await?;
            cleanup = Some(backend.spawn_cleanup(CLEANUP_EVERY)?);
            let storage = "PostgreSQL at DATABASE_URL".to_owned();
            let layer = sessions(backend, config)?;
            (router(layer, &storage), storage)
        }
        BackendKind::Redis => {
            // Redis keys expire by themselves: no cleanup task.
            let backend = RedisBackend::from_url(&config.redis_url)?.with_expire(ABANDONED_AFTER);
            // Fail now, with the backend's message, rather than on the first visit.
            backend.exists(&backend.generate_id()).await?;
            let storage = "Redis at REDIS_URL".to_owned();
            let layer = sessions(backend, config)?;
            (router(layer, &storage), storage)
        }
    };
    Ok(App {
        router,
        storage,
        cleanup,
    })
}

/// The app's routes behind `sessions`, for any backend. `storage` says on the page where
/// sessions are kept.
///
/// - `GET /`: the page; each visit adds one to the counter. The page is a locked route
///   where the backend can lock (every server-side one): the visits of one session are
///   counted one at a time, so the count is exact when a browser sends several at once
///   (signed cookies cannot lock: there the answer set last wins).
/// - `POST /login` (form field `name`): a new session id, the name stored, back to `/`.
/// - `POST /logout`: the session deleted, back to `/`.
/// - `POST /sign-out-others`: every other session of the logged-in user ended, back to `/`.
pub fn router<B: SessionBackend>(sessions: SessionLayer<B>, storage: &str) -> Router {
    let storage: Arc<str> = storage.into();
    let page = Router::new().route("/", get(move |session| index(session, storage)));
    let page = match sessions.lock() {
        Ok(lock) => page.route_layer(lock),
        Err(_) => page,
    };
    page.route("/login", post(login))
        .route("/logout", post(logout))
        .route("/sign-out-others", post(sign_out_others))
        .layer(sessions)
}

async fn index(session: Session, storage: Arc<str>) -> Result<Response, Error> {
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    let name: Option<String> = session.get("name")?;
    // The logged-in user's sessions, when the backend can list them (signed cookies cannot).
    let devices = match session.user_sessions().await {
        Ok(sessions) => Devices::Listed(
            sessions
                .iter()
                .map(|device| {
                    let agent: String = device.get("agent").unwrap_or_default();
                    (agent, device.current)
                })
                .collect(),
        ),
        Err(Error::Unsupported(_)) => Devices::Unsupported,
        Err(error) => return Err(error),
    };
    let signed_out: Option<usize> = session.take("signed_out")?;
    Ok(page(&View {
        visits,
        name: name.as_deref(),
        storage: &storage,
        devices,
        signed_out,
    }))
}

/// The login form.
#[derive(Deserialize)]
struct Login {
    name: String,
    /// The "remember me" checkbox: present (`on`) when ticked.
    remember: Option<String>,
}

/// How long a remembered login lasts without a visit.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

async fn login(
    session: Session,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Result<Response, Error> {
    let name = form.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Html(format!(
                "<!doctype html><meta charset=utf-8><title>Log in</title>\
                 <p>A name is 1 to {MAX_NAME_CHARS} characters. <a href=/>Back</a></p>"
            )),
        )
            .into_response());
    }
    // A fresh id the moment the session gains a user: an id someone planted in this browser
    // before the login (session fixation) is worth nothing after it. The old record goes.
    session.regenerate_id()?;
    session.insert("name", name)?;
    // Bound to its user: what lets the page list this user's sessions and end the others.
    // (A real app binds its user id; this one has only the name.)
    session.set_user(name)?;
    // A label for the device list.
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .unwrap_or("an unknown browser");
    session.insert("agent", agent.chars().take(120).collect::<String>())?;
    // "Remember me": 30 days without a visit (its own window replaces the layer's 2-hour idle
    // timeout); otherwise the login lasts as long as the browser stays open (a cookie without
    // Max-Age) and two hours without a visit on the server. The layer's 30-day absolute
    // limit caps both.
    session.set_lifetime(Some(if form.remember.is_some() {
        Lifetime::Inactivity(REMEMBER_FOR)
    } else {
        Lifetime::BrowserSession
    }))?;
    // Post/redirect/get: a reload of the page that follows does not post the form again.
    Ok(Redirect::to("/").into_response())
}

async fn logout(session: Session) -> Result<Redirect, Error> {
    // Removes the record from the backend now and expires the cookie in the response.
    session.delete().await?;
    Ok(Redirect::to("/"))
}

/// "Sign out of other devices": every other session of this user ends now; their next
/// request finds no session (and their cookie is expired).
async fn sign_out_others(session: Session) -> Result<Response, Error> {
    match session.revoke_other_sessions().await {
        Ok(ended) => {
            session.insert("signed_out", ended)?;
            Ok(Redirect::to("/").into_response())
        }
        Err(Error::Unsupported(_)) => Ok((
            StatusCode::NOT_IMPLEMENTED,
            Html(
                "<!doctype html><meta charset=utf-8><title>Not available</title>\
                 <p>Signed cookies live only in browsers: signing out other devices needs a \
                 server-side store. <a href=/>Back</a></p>",
            ),
        )
            .into_response()),
        Err(error) => Err(error),
    }
}

/// What the page shows of the user's sessions.
enum Devices {
    /// Each session's label (its browser) and whether it is this one.
    Listed(Vec<(String, bool)>),
    /// The backend cannot list them (signed cookies).
    Unsupported,
}

/// Everything the page shows.
struct View<'a> {
    visits: u64,
    name: Option<&'a str>,
    storage: &'a str,
    devices: Devices,
    /// How many other sessions "sign out of other devices" just ended.
    signed_out: Option<usize>,
}

/// `text` with the characters HTML gives a meaning escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(view: &View<'_>) -> Response {
    let View {
        visits,
        name,
        storage,
        ..
    } = *view;
    let times = if visits == 1 { "time" } else { "times" };
    // Every form is a plain HTML post: no JavaScript needed. They need no CSRF token here
    // because the cookie is `SameSite=Lax`: browsers do not send it with another site's
    // cross-site POST, so such a post finds no session to act on.
    let account = match name {
        Some(name) => format!(
            "<p>Logged in as <strong id=user>{}</strong>.</p>\
             <form method=post action=/logout><button id=logout>Log out</button></form>{}",
            escape(name),
            devices(view)
        ),
        None => format!(
            "<p id=anonymous>You are not logged in.</p>\
             <form method=post action=/login>\
             <label for=name>Name</label> \
             <input id=name name=name required maxlength={MAX_NAME_CHARS} autocomplete=off> \
             <label><input type=checkbox id=remember name=remember> Remember me</label> \
             <button id=login>Log in</button></form>"
        ),
    };
    let html = format!(
        "<!doctype html>\
         <html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>sessions example</title>\
         <style>\
         body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;\
         color:#222;line-height:1.5}}\
         h1{{font-size:1.6rem}} .count{{font-size:2.2rem;font-weight:bold}}\
         input,button{{font-size:1rem;padding:.3rem .6rem}} footer{{margin-top:3rem;color:#666;\
         font-size:.9rem}} h2{{font-size:1.2rem;margin-top:2rem}}\
         </style></head><body>\
         <h1>Sessions example</h1>\
         <p>You have visited this page <span class=count id=visits>{visits}</span> {times}.</p>\
         {account}\
         <footer>Sessions are kept in {storage}.</footer>\
         </body></html>",
        storage = escape(storage),
    );
    // The page is one visitor's: no shared cache may keep it, and the back button after a
    // logout asks the server again.
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// The logged-in user's sessions and the button that ends the others.
fn devices(view: &View<'_>) -> String {
    let signed_out = match view.signed_out {
        Some(1) => "<p id=signed-out>Signed out of 1 other device.</p>".to_owned(),
        Some(n) => format!("<p id=signed-out>Signed out of {n} other devices.</p>"),
        None => String::new(),
    };
    match &view.devices {
        Devices::Unsupported => "<h2>Your devices</h2>\
             <p id=devices-unsupported>Signed cookies live only in browsers, so no server can \
             list them or sign them out. Run with a server-side store (<code>--backend \
             memory</code>, <code>sqlite</code>, <code>redis</code> or <code>postgres</code>) \
             to see your devices here.</p>"
            .to_owned(),
        Devices::Listed(devices) => {
            let items: String = devices
                .iter()
                .map(|(agent, current)| {
                    let here = if *current {
                        " <em>(this device)</em>"
                    } else {
                        ""
                    };
                    format!("<li>{}{here}</li>", escape(agent))
                })
                .collect();
            format!(
                "<h2>Your devices</h2>{signed_out}<ul id=devices>{items}</ul>\
                 <form method=post action=/sign-out-others>\
                 <button id=sign-out-others>Sign out of other devices</button></form>"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Option<Config>, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(args.iter().map(|a| a.to_string()), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn secure_is_on_except_on_loopback_and_off_only_with_a_warning() {
        let on = |addr: &str, secure: Option<&str>| {
            let mut env = vec![("ADDR", addr)];
            if let Some(secure) = secure {
                env.push(("SESSION_SECURE", secure));
            }
            let config = parse(&[], &env).unwrap().unwrap();
            (config.secure_cookie(), config.insecure_warning().is_some())
        };
        assert_eq!(on("127.0.0.1:3000", None), (false, false));
        assert_eq!(on("[::1]:3000", None), (false, false));
        assert_eq!(on("localhost:3000", None), (false, false));
        assert_eq!(on("0.0.0.0:3000", None), (true, false));
        assert_eq!(on("192.0.2.10:8080", None), (true, false));
        assert_eq!(on("0.0.0.0:3000", Some("0")), (false, true));
        assert_eq!(on("127.0.0.1:3000", Some("1")), (true, false));
    }

    #[test]
    fn defaults_are_cookie_sessions_on_port_3000() {
        let config = parse(&[], &[]).unwrap().unwrap();
        assert_eq!(config.backend, BackendKind::Cookie);
        assert_eq!(config.addr, "127.0.0.1:3000");
        assert_eq!(config.max_age, None);
        assert_eq!(config.secure, None);
        assert!(
            !config.secure_cookie(),
            "off on the default loopback address"
        );
        assert_eq!(config.insecure_warning(), None);
        assert_eq!(config.secret, None);
        assert_eq!(config.sqlite_path, "sessions.db");
    }

    #[test]
    fn the_flag_wins_over_the_variable() {
        let env = [("SESSION_BACKEND", "redis")];
        assert_eq!(
            parse(&[], &env).unwrap().unwrap().backend,
            BackendKind::Redis
        );
        for args in [&["--backend", "sqlite"][..], &["--backend=SQLite"][..]] {
            assert_eq!(
                parse(args, &env).unwrap().unwrap().backend,
                BackendKind::Sqlite
            );
        }
    }

    #[test]
    fn every_backend_has_a_name_that_parses_back() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.name().parse::<BackendKind>(), Ok(kind));
        }
    }

    #[test]
    fn zero_max_age_asks_for_a_browser_session_cookie() {
        let config = parse(&[], &[("SESSION_MAX_AGE", "0")]).unwrap().unwrap();
        assert_eq!(config.max_age, Some(Duration::ZERO));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(
            parse(&["--backend", "mongo"], &[])
                .unwrap_err()
                .contains("unknown backend")
        );
        assert!(
            parse(&["--backend"], &[])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse(&["--port"], &[])
                .unwrap_err()
                .contains("unexpected argument")
        );
        let err = parse(&[], &[("SESSION_MAX_AGE", "soon")]).unwrap_err();
        assert!(err.contains("SESSION_MAX_AGE"), "{err}");
        assert!(parse(&[], &[("SESSION_SECURE", "maybe")]).is_err());
    }

    #[test]
    fn help_is_asked_for() {
        assert_eq!(parse(&["--help"], &[]), Ok(None));
        assert_eq!(parse(&["--backend", "memory", "-h"], &[]), Ok(None));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let config = parse(
            &[],
            &[("SESSION_SECRET", "a very secret secret, 32 bytes long")],
        )
        .unwrap()
        .unwrap();
        assert!(!format!("{config:?}").contains("very secret"));
    }

    #[test]
    fn names_are_escaped_on_the_page() {
        assert_eq!(
            escape("<b>\"Tom\" & 'Jerry'</b>"),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }
}
