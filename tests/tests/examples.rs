//! The example apps over HTTP: the main example (`examples/app`) on each server-side backend
//! (the browser test drives it on the cookie backend), and the admin area (`examples/admin`).
//!
//! Redis and PostgreSQL are the servers at `REDIS_URL` and `DATABASE_URL` that `./scripts/test`
//! starts.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};
use sessionkit_app::Config;
use std::path::PathBuf;
use tokio::task::JoinHandle;

/// The main example built for `env`'s settings, served on a free loopback port.
struct App {
    base: String,
    server: JoinHandle<()>,
}

impl App {
    async fn start(env: &[(&str, &str)]) -> App {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(
                // The services' addresses, as the rest of the suite finds them.
                ["REDIS_URL", "DATABASE_URL"]
                    .into_iter()
                    .filter_map(|k| Some((k.to_owned(), std::env::var(k).ok()?))),
            )
            .collect();
        let config = Config::parse(std::iter::empty(), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .expect("valid settings")
        .expect("settings, not help");
        let app = sessionkit_app::build(&config)
            .await
            .expect("the app starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app.router)
                .await
                .expect("the app's server failed");
        });
        App { base, server }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A client that neither keeps cookies nor follows redirects: the test sees every step.
fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client")
}

/// What a response did: its status and redirect target, its session cookie's `name=value` (or `None` when it set
/// none), whether it expired the cookie, and its body.
struct Step {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    expired: bool,
    body: String,
}

impl Step {
    fn visits(&self) -> u64 {
        let start = self.body.find("id=visits>").expect("a counter on the page") + 10;
        let end = start + self.body[start..].find('<').expect("the counter's end");
        self.body[start..end].parse().expect("a number")
    }

    fn user(&self) -> Option<&str> {
        let start = self.body.find("id=user>")? + 8;
        Some(&self.body[start..start + self.body[start..].find('<')?])
    }
}

async fn send(request: reqwest::RequestBuilder, cookie: Option<&str>) -> Step {
    let request = match cookie {
        Some(cookie) => request.header(COOKIE, cookie),
        None => request,
    };
    let response = request.send().await.expect("the app answers");
    let set = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("an ASCII Set-Cookie").to_owned())
        .find(|v| v.starts_with("session=") || v.starts_with("admin_session="));
    let expired = set.as_deref().is_some_and(|v| v.contains("Max-Age=0"));
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Step {
        status: response.status(),
        location,
        cookie: set.map(|v| v.split(';').next().unwrap_or_default().to_owned()),
        expired,
        body: response.text().await.expect("a body"),
    }
}

/// Visit, log in, log out, on a backend that keeps sessions on the server: the counter
/// counts, login moves the session to a new id and the old one stops working, logout ends it.
async fn login_and_logout(backend: &str, env: &[(&str, &str)]) {
    let mut settings = vec![("SESSION_BACKEND", backend)];
    settings.extend_from_slice(env);
    let app = App::start(&settings).await;
    let http = client();
    let page = format!("{}/", app.base);

    let first = send(http.get(&page), None).await;
    assert_eq!(first.status, StatusCode::OK, "{backend}");
    assert_eq!(first.visits(), 1, "{backend}: first visit");
    assert_eq!(first.user(), None);
    let before = first.cookie.expect("a session cookie");
    let second = send(http.get(&page), Some(&before)).await;
    assert_eq!(second.visits(), 2, "{backend}: second visit");

    let login = send(
        http.post(format!("{}/login", app.base))
            .form(&[("name", "  Ada <Lovelace>  ")]),
        Some(&before),
    )
    .await;
    assert_eq!(
        login.status,
        StatusCode::SEE_OTHER,
        "{backend}: {}",
        login.body
    );
    assert_eq!(login.location.as_deref(), Some("/"), "{backend}");
    let after = login.cookie.expect("login sets a cookie");
    assert_ne!(after, before, "{backend}: the id must change on login");

    let logged_in = send(http.get(&page), Some(&after)).await;
    assert_eq!(logged_in.user(), Some("Ada &lt;Lovelace&gt;"), "{backend}");
    assert_eq!(
        logged_in.visits(),
        3,
        "{backend}: the count moves to the new id"
    );

    // The id from before the login is worthless now: the fixation defence.
    let old = send(http.get(&page), Some(&before)).await;
    assert_eq!(old.user(), None, "{backend}: the pre-login id still works");
    assert_eq!(old.visits(), 1, "{backend}");

    let logout = send(http.post(format!("{}/logout", app.base)), Some(&after)).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER, "{backend}");
    assert!(logout.expired, "{backend}: logout must expire the cookie");
    // Even a copy of the cookie kept from before the logout no longer opens the session.
    let replay = send(http.get(&page), Some(&after)).await;
    assert_eq!(
        replay.user(),
        None,
        "{backend}: the session outlived the logout"
    );
    assert_eq!(replay.visits(), 1, "{backend}");
}

#[tokio::test]
async fn main_example_in_memory() {
    login_and_logout("memory", &[]).await;
}

/// Sixteen visits of one session at once: the page is a locked route, so each is counted.
async fn parallel_visits_count_exactly(backend: &str, env: &[(&str, &str)]) {
    let mut settings = vec![("SESSION_BACKEND", backend)];
    settings.extend_from_slice(env);
    let app = App::start(&settings).await;
    let http = client();
    let page = format!("{}/", app.base);
    let first = send(http.get(&page), None).await;
    let cookie = first.cookie.expect("a session cookie");
    let visits: Vec<_> = (0..16)
        .map(|_| {
            let (http, page, cookie) = (http.clone(), page.clone(), cookie.clone());
            tokio::spawn(async move { send(http.get(&page), Some(&cookie)).await })
        })
        .collect();
    let mut counts = Vec::new();
    for visit in visits {
        let step = visit.await.expect("a visit");
        assert_eq!(step.status, StatusCode::OK, "{backend}");
        counts.push(step.visits());
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (2..=17).collect::<Vec<u64>>(),
        "{backend}: each parallel visit counted once"
    );
    assert_eq!(send(http.get(&page), Some(&cookie)).await.visits(), 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_example_counts_parallel_visits_in_memory() {
    parallel_visits_count_exactly("memory", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_example_counts_parallel_visits_on_sqlite() {
    let path = scratch_db("parallel");
    parallel_visits_count_exactly("sqlite", &[("SQLITE_PATH", &path)]).await;
    remove_db(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_example_counts_parallel_visits_on_redis() {
    parallel_visits_count_exactly("redis", &[]).await;
}

#[tokio::test]
async fn main_example_on_sqlite() {
    let path = scratch_db("login");
    login_and_logout("sqlite", &[("SQLITE_PATH", &path)]).await;
    remove_db(&path);
}

#[tokio::test]
async fn main_example_on_redis() {
    login_and_logout("redis", &[]).await;
}

/// A PostgreSQL table of the test's own (the shared database may hold another test's, or an
/// older layout), dropped when the test ends.
struct OwnTable(String);

impl OwnTable {
    fn new() -> OwnTable {
        OwnTable(format!(
            "example_{}",
            sessionkit_core::generate_id()[..10]
                .to_lowercase()
                .replace('-', "_")
        ))
    }
}

impl Drop for OwnTable {
    fn drop(&mut self) {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| sessionkit_app::DEFAULT_DATABASE_URL.to_owned());
        let drop = format!("DROP TABLE IF EXISTS \"{}\"", self.0);
        // A runtime of its own: the test's is shutting down.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                use sessionkit_sql::sqlx::{Connection, PgConnection};
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = sessionkit_sql::sqlx::raw_sql(&drop)
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn main_example_on_postgres() {
    let table = OwnTable::new();
    login_and_logout("postgres", &[("SESSION_TABLE", table.0.as_str())]).await;
}

/// Two browsers log in as the same user and a third as another; one of the first two signs
/// out of its other devices: the other one is logged out (its cookie expired), the third keeps
/// its session.
async fn sign_out_of_other_devices(backend: &str, env: &[(&str, &str)]) {
    let mut settings = vec![("SESSION_BACKEND", backend)];
    settings.extend_from_slice(env);
    let app = App::start(&settings).await;
    let http = client();
    let page = format!("{}/", app.base);
    let user = format!("Grace {}", &sessionkit_core::generate_id()[..6]);
    let log_in = |name: String, agent: &'static str| {
        let (http, base) = (&http, &app.base);
        async move {
            let login = send(
                http.post(format!("{base}/login"))
                    .header(reqwest::header::USER_AGENT, agent)
                    .form(&[("name", name.as_str())]),
                None,
            )
            .await;
            assert_eq!(
                login.status,
                StatusCode::SEE_OTHER,
                "{backend}: {}",
                login.body
            );
            login.cookie.expect("login sets a cookie")
        }
    };
    let laptop = log_in(user.clone(), "Laptop browser").await;
    let phone = log_in(user.clone(), "Phone browser").await;
    let other = log_in(format!("{user} the other"), "Someone else").await;

    let listed = send(http.get(&page), Some(&laptop)).await;
    assert!(
        listed
            .body
            .contains("<li>Laptop browser <em>(this device)</em></li>")
            && listed.body.contains("<li>Phone browser</li>")
            && !listed.body.contains("Someone else"),
        "{backend}: {}",
        listed.body
    );

    let signed_out = send(
        http.post(format!("{}/sign-out-others", app.base)),
        Some(&laptop),
    )
    .await;
    assert_eq!(
        signed_out.status,
        StatusCode::SEE_OTHER,
        "{backend}: {}",
        signed_out.body
    );
    let after = send(http.get(&page), Some(&laptop)).await;
    assert!(
        after.body.contains("Signed out of 1 other device.") && !after.body.contains("Phone"),
        "{backend}: {}",
        after.body
    );
    assert_eq!(
        after.user(),
        Some(user.as_str()),
        "{backend}: the laptop was logged out"
    );

    let phone_page = send(http.get(&page), Some(&phone)).await;
    assert_eq!(
        phone_page.user(),
        None,
        "{backend}: the phone is still logged in"
    );
    assert!(phone_page.body.contains("id=anonymous"), "{backend}");
    let other_page = send(http.get(&page), Some(&other)).await;
    assert_eq!(
        other_page.user(),
        Some(format!("{user} the other").as_str()),
        "{backend}: another user's session ended"
    );
}

#[tokio::test]
async fn main_example_signs_out_other_devices_in_memory() {
    sign_out_of_other_devices("memory", &[]).await;
}

#[tokio::test]
async fn main_example_signs_out_other_devices_on_sqlite() {
    let path = scratch_db("devices");
    sign_out_of_other_devices("sqlite", &[("SQLITE_PATH", &path)]).await;
    remove_db(&path);
}

#[tokio::test]
async fn main_example_signs_out_other_devices_on_redis() {
    sign_out_of_other_devices("redis", &[]).await;
}

#[tokio::test]
async fn main_example_signs_out_other_devices_on_postgres() {
    let table = OwnTable::new();
    sign_out_of_other_devices("postgres", &[("SESSION_TABLE", table.0.as_str())]).await;
}

/// With signed cookies the page says why there is no device list, and the button's route
/// answers 501 rather than pretending.
#[tokio::test]
async fn main_example_on_cookies_explains_there_is_no_device_list() {
    let app = App::start(&[(
        "SESSION_SECRET",
        "a secret for the example test, long enough!",
    )])
    .await;
    let http = client();
    let login = send(
        http.post(format!("{}/login", app.base))
            .form(&[("name", "Grace")]),
        None,
    )
    .await;
    let cookie = login.cookie.expect("login sets a cookie");
    let page = send(http.get(format!("{}/", app.base)), Some(&cookie)).await;
    assert_eq!(page.user(), Some("Grace"));
    assert!(
        page.body.contains("id=devices-unsupported"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("id=sign-out-others"));
    let refused = send(
        http.post(format!("{}/sign-out-others", app.base)),
        Some(&cookie),
    )
    .await;
    assert_eq!(refused.status, StatusCode::NOT_IMPLEMENTED);
}

fn scratch_db(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sessionkit-app-{name}-{}.db", std::process::id()));
    remove_db(&path.display().to_string());
    path.display().to_string()
}

fn remove_db(path: &str) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}

#[tokio::test]
async fn sqlite_sessions_survive_a_restart() {
    let path = scratch_db("restart");
    let settings = [
        ("SESSION_BACKEND", "sqlite"),
        ("SQLITE_PATH", path.as_str()),
    ];
    let http = client();

    let app = App::start(&settings).await;
    let first = send(http.get(format!("{}/", app.base)), None).await;
    let cookie = first.cookie.expect("a session cookie");
    drop(app);

    let app = App::start(&settings).await;
    let again = send(http.get(format!("{}/", app.base)), Some(&cookie)).await;
    assert_eq!(again.visits(), 2, "the session did not survive the restart");
    drop(app);
    remove_db(&path);
}

#[tokio::test]
async fn login_refuses_an_empty_or_overlong_name() {
    let app = App::start(&[("SESSION_BACKEND", "memory")]).await;
    let http = client();
    for name in ["", "   ", &"x".repeat(41)] {
        let step = send(
            http.post(format!("{}/login", app.base))
                .form(&[("name", name)]),
            None,
        )
        .await;
        assert_eq!(step.status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        assert_eq!(
            step.cookie, None,
            "{name:?}: no session for a refused login"
        );
    }
}

#[tokio::test]
async fn cookie_backend_sets_a_browser_session_cookie_when_max_age_is_zero() {
    let secret = "a test secret that is long enough to sign cookies with";
    for (max_age, expected) in [(None, Some("Max-Age=1209600")), (Some("0"), None)] {
        let mut settings = vec![("SESSION_SECRET", secret)];
        settings.extend(max_age.map(|age| ("SESSION_MAX_AGE", age)));
        let app = App::start(&settings).await;
        let response = client()
            .get(format!("{}/", app.base))
            .send()
            .await
            .expect("the app answers");
        let set_cookie = response
            .headers()
            .get(SET_COOKIE)
            .expect("a session cookie")
            .to_str()
            .expect("ASCII")
            .to_owned();
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
        match expected {
            Some(max_age) => assert!(set_cookie.contains(max_age), "{set_cookie}"),
            None => assert!(
                !set_cookie.contains("Max-Age") && !set_cookie.contains("Expires"),
                "{set_cookie}"
            ),
        }
    }
}

#[tokio::test]
async fn admin_sessions_live_under_admin_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    let router = admin::router(None).expect("the admin app");
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the admin server");
    });
    let http = client();

    let public = send(http.get(format!("{base}/")), None).await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(
        public.cookie, None,
        "the public page must not start a session"
    );

    let response = http
        .get(format!("{base}/admin"))
        .send()
        .await
        .expect("the admin page");
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .expect("an admin session cookie")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(set_cookie.starts_with("admin_session="), "{set_cookie}");
    assert!(set_cookie.contains("Path=/admin"), "{set_cookie}");
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();

    // Autoload: the handler never calls load(), yet the count goes on.
    let again = send(http.get(format!("{base}/admin")), Some(&cookie)).await;
    assert_eq!(again.visits(), 2);

    let logout = send(http.post(format!("{base}/admin/logout")), Some(&cookie)).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(logout.location.as_deref(), Some("/admin"));
    assert!(logout.expired, "logout must expire the admin cookie");
    server.abort();
}

#[test]
fn admin_domain_option_is_checked() {
    assert!(admin::router(Some("example.com")).is_ok());
    assert!(admin::router(Some("example.com; Secure")).is_err());
}
