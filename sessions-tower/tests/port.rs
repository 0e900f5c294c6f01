//! A handler as it reads after a port from tower-sessions: `Session` instead of
//! tower-sessions' `Session`, the `.await`s on accessors gone, `cycle_id` as `regenerate_id`,
//! `remove::<T>` as `take::<T>`, `flush` as `delete`. It works on the first request, with no
//! `load()` to forget.

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, StatusCode, header::COOKIE};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::testing::cookie_from;
use sessionkit_tower::{Error, Session, SessionLayer};
use tower::ServiceExt;

async fn login(session: Session) -> Result<&'static str, Error> {
    session.regenerate_id()?; // tower-sessions: session.cycle_id().await?
    session.insert("user_id", 42)?; // session.insert("user_id", 42).await?
    session.insert("flash", "welcome")?;
    Ok("logged in")
}

async fn home(session: Session) -> Result<String, Error> {
    let user: Option<u64> = session.get("user_id")?; // session.get("user_id").await?
    let flash: Option<String> = session.take("flash")?; // session.remove("flash").await?
    Ok(format!("{user:?} {flash:?}"))
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.delete().await?; // session.flush().await?
    Ok("bye")
}

async fn call(
    app: &Router,
    method: &str,
    cookie: Option<&str>,
    path: &str,
) -> (StatusCode, Option<String>, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let cookie = cookie_from(&response, "session");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, cookie, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_ported_tower_sessions_handler_works_without_a_load_call() {
    let app = Router::new()
        .route("/login", post(login))
        .route("/", get(home))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(InMemoryBackend::new()));
    let (status, cookie, _) = call(&app, "POST", None, "/login").await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.expect("the login sets the cookie");
    let (_, _, body) = call(&app, "GET", Some(&cookie), "/").await;
    assert_eq!(body, r#"Some(42) Some("welcome")"#);
    let (_, _, body) = call(&app, "GET", Some(&cookie), "/").await;
    assert_eq!(body, "Some(42) None", "the flash was taken");
    let (_, after_logout, _) = call(&app, "POST", Some(&cookie), "/logout").await;
    assert_eq!(after_logout, None, "the logout removes the cookie");
    let (_, _, body) = call(&app, "GET", Some(&cookie), "/").await;
    assert_eq!(body, "None None");
}
