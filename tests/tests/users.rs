//! "Log out everywhere" end to end over real sockets: sessions bound to a user, listed and
//! revoked through the handler API, on every server-side backend (memory, Redis, SQLite,
//! PostgreSQL, MariaDB); and the per-user generation pattern on the cookie backend.

mod common;

use axum::Router;
use axum::extract::{Path, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use common::{Reply, Server, browser, plain, send};
use reqwest::Client;
use sessionkit_cookie::CookieBackend;
use sessionkit_core::{DeviceId, SessionBackend};
use sessionkit_redis::RedisBackend;
use sessionkit_redis::deadpool_redis::redis;
use sessionkit_sql::{MySqlBackend, PostgresBackend, SqliteBackend, sqlx};
use sessionkit_tower::{Error, Session, SessionLayer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn login(
    session: Session,
    Path((user, agent)): Path<(String, String)>,
) -> Result<&'static str, Error> {
    session.regenerate_id()?;
    session.set_user(user)?;
    session.insert("agent", agent)?;
    Ok("ok")
}

async fn whoami(session: Session) -> Result<String, Error> {
    Ok(session.user().unwrap_or_else(|| "nobody".to_owned()))
}

/// `agent` for each of the user's sessions, `*` marking this one, with its handle; sorted.
async fn devices(session: Session) -> Result<String, Error> {
    let mut shown: Vec<(String, String)> = session
        .user_sessions()
        .await?
        .iter()
        .map(|device| {
            let agent: String = device.get("agent").unwrap_or_default();
            let here = if device.current { "*" } else { "" };
            (agent.clone(), format!("{agent}{here}={}", device.id))
        })
        .collect();
    shown.sort();
    let shown: Vec<String> = shown.into_iter().map(|(_, device)| device).collect();
    Ok(shown.join(","))
}

async fn sign_out_others(session: Session) -> Result<String, Error> {
    Ok(session.revoke_other_sessions().await?.to_string())
}

async fn revoke(session: Session, Path(handle): Path<String>) -> Result<String, Error> {
    let handle = DeviceId::from(handle);
    Ok(session.revoke_session(&handle).await?.to_string())
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.delete().await?;
    Ok("bye")
}

fn app<B: SessionBackend>(backend: B) -> Router {
    Router::new()
        .route("/login/{user}/{agent}", get(login))
        .route("/whoami", get(whoami))
        .route("/devices", get(devices))
        .route("/sign-out-others", get(sign_out_others))
        .route("/revoke/{handle}", get(revoke))
        .route("/logout", get(logout))
        .layer(
            SessionLayer::builder(backend)
                .with_secure(false)
                .build()
                .unwrap(),
        )
}

/// `devices` without the handles.
fn agents(reply: &Reply) -> String {
    reply
        .body
        .split(',')
        .map(|device| device.split('=').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(",")
}

/// The handle `devices` shows for `agent`.
fn handle_of(reply: &Reply, agent: &str) -> String {
    reply
        .body
        .split(',')
        .find_map(|device| device.strip_prefix(&format!("{agent}=")))
        .unwrap_or_else(|| panic!("no device {agent} in {:?}", reply.body))
        .to_owned()
}

async fn logged_in(server: &Server, user: &str, agent: &str) -> (Client, String) {
    let client = browser();
    let reply = send(
        &client,
        &server.url(&format!("/login/{user}/{agent}")),
        None,
    )
    .await;
    reply.assert_ok("ok");
    (client, reply.cookie().pair())
}

/// The whole story on one backend: three devices of one user and one of another; "sign out
/// of other devices", a copied cookie replayed, one device revoked by its handle, logout.
async fn log_out_everywhere<B: SessionBackend>(backend: B) {
    let server = Server::start(app(backend)).await;
    let suffix = &sessionkit_core::generate_id()[..8];
    let (alice, bob) = (format!("alice-{suffix}"), format!("bob-{suffix}"));
    let (laptop, _) = logged_in(&server, &alice, "laptop").await;
    let (phone, phone_cookie) = logged_in(&server, &alice, "phone").await;
    let (tablet, _) = logged_in(&server, &alice, "tablet").await;
    let (bobs, _) = logged_in(&server, &bob, "desktop").await;

    let listed = send(&laptop, &server.url("/devices"), None).await;
    assert_eq!(agents(&listed), "laptop*,phone,tablet");
    for (client, user) in [(&phone, &alice), (&tablet, &alice), (&bobs, &bob)] {
        send(client, &server.url("/whoami"), None)
            .await
            .assert_ok(user);
    }

    send(&laptop, &server.url("/sign-out-others"), None)
        .await
        .assert_ok("2");
    for client in [&phone, &tablet] {
        let reply = send(client, &server.url("/whoami"), None).await;
        reply.assert_ok("nobody");
        assert!(
            reply.cookie().is_expiry(),
            "a revoked session's cookie must be expired: {:?}",
            reply.set_cookies
        );
    }
    // A copy of the phone's cookie, taken before, is worth nothing now.
    send(&plain(), &server.url("/whoami"), Some(&phone_cookie))
        .await
        .assert_ok("nobody");
    send(&laptop, &server.url("/whoami"), None)
        .await
        .assert_ok(&alice);
    send(&bobs, &server.url("/whoami"), None)
        .await
        .assert_ok(&bob);
    let listed = send(&laptop, &server.url("/devices"), None).await;
    assert_eq!(agents(&listed), "laptop*");

    // One device, by its handle: the phone signs in again and the laptop ends it.
    logged_in(&server, &alice, "phone").await;
    let (phone, _) = logged_in(&server, &alice, "phone2").await;
    let listed = send(&laptop, &server.url("/devices"), None).await;
    assert_eq!(agents(&listed), "laptop*,phone,phone2");
    let handle = handle_of(&listed, "phone2");
    send(&laptop, &server.url(&format!("/revoke/{handle}")), None)
        .await
        .assert_ok("true");
    send(&laptop, &server.url(&format!("/revoke/{handle}")), None)
        .await
        .assert_ok("false");
    // Bob cannot end Alice's sessions with a handle of hers.
    let theirs = handle_of(&listed, "phone");
    send(&bobs, &server.url(&format!("/revoke/{theirs}")), None)
        .await
        .assert_ok("false");
    send(&phone, &server.url("/whoami"), None)
        .await
        .assert_ok("nobody");
    let listed = send(&laptop, &server.url("/devices"), None).await;
    assert_eq!(agents(&listed), "laptop*,phone");

    // Logging out ends this session only.
    send(&laptop, &server.url("/logout"), None)
        .await
        .assert_ok("bye");
    send(&laptop, &server.url("/whoami"), None)
        .await
        .assert_ok("nobody");
    send(&bobs, &server.url("/whoami"), None)
        .await
        .assert_ok(&bob);
}

#[tokio::test]
async fn memory() {
    log_out_everywhere(sessionkit_memory::InMemoryBackend::new()).await;
}

#[tokio::test]
async fn redis() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("e2e-users-{}:", &sessionkit_core::generate_id()[..10]);
    let backend = RedisBackend::from_url(&url)
        .expect("a Redis URL")
        .with_prefix(&prefix);
    log_out_everywhere(backend).await;
    // Every key of the test goes (the indexes are pruned to nothing or left by logout).
    let client = redis::Client::open(url.as_str()).expect("a Redis URL");
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).expect("DEL");
    }
}

#[tokio::test]
async fn sqlite() {
    let path = std::env::temp_dir().join(format!(
        "sessions-users-{}.db",
        &sessionkit_core::generate_id()[..12]
    ));
    let backend =
        SqliteBackend::from_url(&format!("sqlite://{}", path.display())).expect("a SQLite URL");
    backend.migrate().await.expect("migrate");
    log_out_everywhere(backend).await;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn table() -> String {
    format!(
        "sessions_users_{}",
        sessionkit_core::generate_id()[..10]
            .to_lowercase()
            .replace('-', "_")
    )
}

#[tokio::test]
async fn postgres() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let table = table();
    let backend = PostgresBackend::builder_from_url(&url)
        .with_table(&table)
        .build()
        .expect("a Postgres URL");
    backend.migrate().await.expect("migrate");
    log_out_everywhere(backend.clone()).await;
    let _ = sqlx::query(&format!("DROP TABLE {table}"))
        .execute(backend.pool())
        .await;
}

#[tokio::test]
async fn mariadb() {
    let url = std::env::var("MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let table = table();
    let backend = MySqlBackend::builder_from_url(&url)
        .with_table(&table)
        .build()
        .expect("a MySQL URL");
    backend.migrate().await.expect("migrate");
    log_out_everywhere(backend.clone()).await;
    let _ = sqlx::query(&format!("DROP TABLE {table}"))
        .execute(backend.pool())
        .await;
}

// ---------------------------------------------------------------------------------------------
// The cookie backend: a per-user generation the application keeps (see the sessionkit-cookie docs)

/// The application's per-user counters: a column of its user table, in a real application.
#[derive(Clone, Default)]
struct Generations(Arc<Mutex<HashMap<String, u64>>>);

impl Generations {
    fn current(&self, user: &str) -> u64 {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.get(user).copied().unwrap_or(0)
    }
    fn bump(&self, user: &str) -> u64 {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let generation = all.entry(user.to_owned()).or_default();
        *generation += 1;
        *generation
    }
}

/// Inside the session layer, before every handler: a session from before its user's last
/// "sign out everywhere" ends here.
async fn check_generation(
    State(generations): State<Generations>,
    session: Session,
    request: axum::extract::Request,
    next: Next,
) -> Result<Response, Error> {
    if let Some(user) = session.user() {
        if session.get::<u64>("generation")? != Some(generations.current(&user)) {
            session.delete().await?;
        }
    }
    Ok(next.run(request).await)
}

#[tokio::test]
async fn cookie_sessions_sign_out_everywhere_with_a_generation() {
    let generations = Generations::default();
    let app = Router::new()
        .route(
            "/login/{user}",
            get(
                |State(generations): State<Generations>,
                 session: Session,
                 Path(user): Path<String>| async move {
                    session.regenerate_id()?;
                    session.insert("generation", generations.current(&user))?;
                    session.set_user(user)?;
                    Ok::<_, Error>("ok")
                },
            ),
        )
        .route("/whoami", get(whoami))
        .route(
            "/sign-out-others",
            get(
                |State(generations): State<Generations>, session: Session| async move {
                    let Some(user) = session.user() else {
                        return Ok::<_, Error>("nobody".to_owned());
                    };
                    session.insert("generation", generations.bump(&user))?;
                    Ok(format!("others signed out of {user}"))
                },
            ),
        )
        .route_layer(middleware::from_fn_with_state(
            generations.clone(),
            check_generation,
        ))
        .with_state(generations)
        .layer(
            SessionLayer::builder(
                CookieBackend::private(b"a secret for the generation test, long enough")
                    .expect("a long secret"),
            )
            .with_secure(false)
            .build()
            .unwrap(),
        );
    let server = Server::start(app).await;
    let laptop = browser();
    let phone = browser();
    for client in [&laptop, &phone] {
        send(client, &server.url("/login/alice"), None)
            .await
            .assert_ok("ok");
    }
    send(&phone, &server.url("/whoami"), None)
        .await
        .assert_ok("alice");
    send(&laptop, &server.url("/sign-out-others"), None)
        .await
        .assert_ok("others signed out of alice");
    let reply = send(&phone, &server.url("/whoami"), None).await;
    reply.assert_ok("nobody");
    assert!(
        reply.cookie().is_expiry(),
        "the phone's cookie must be expired"
    );
    send(&laptop, &server.url("/whoami"), None)
        .await
        .assert_ok("alice");
    // A copy of a cookie from before a bump ends too: the copy is what a thief would hold.
    let stolen = login_cookie(&server, "alice").await;
    send(&laptop, &server.url("/sign-out-others"), None)
        .await
        .assert_ok("others signed out of alice");
    send(&plain(), &server.url("/whoami"), Some(&stolen))
        .await
        .assert_ok("nobody");
}

/// The cookie of a fresh login as `user`.
async fn login_cookie(server: &Server, user: &str) -> String {
    let reply = send(&plain(), &server.url(&format!("/login/{user}")), None).await;
    reply.assert_ok("ok");
    reply.cookie().pair()
}
