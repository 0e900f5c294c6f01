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

/// The variations a port from tower-sessions produces once the compiler has had its say
/// (the `.await` removed): `?`, `.unwrap()` kept from tower-sessions, `unwrap_or_default()`,
/// a `from_fn` middleware and `Option<Session>`. Each reads the logged-in user, where a
/// session read before its load would have seen an anonymous one.
#[tokio::test]
async fn every_ported_variation_sees_the_logged_in_user() {
    use axum::extract::Request as AxumRequest;
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};

    async fn with_question_mark(session: Session) -> Result<String, Error> {
        Ok(format!("{:?}", session.get::<u64>("user_id")?))
    }
    async fn with_unwrap(session: Session) -> String {
        format!("{:?}", session.get::<u64>("user_id").unwrap())
    }
    async fn with_default(session: Session) -> String {
        session
            .get::<u64>("user_id")
            .unwrap_or_default()
            .map_or("anonymous".to_owned(), |id| id.to_string())
    }
    async fn optional(session: Option<Session>) -> String {
        match session {
            Some(session) => format!("{:?}", session.get::<u64>("user_id").ok().flatten()),
            None => "no layer".to_owned(),
        }
    }
    async fn require_login(session: Session, request: AxumRequest, next: Next) -> Response {
        match session.get::<u64>("user_id") {
            Ok(Some(_)) => next.run(request).await,
            _ => StatusCode::UNAUTHORIZED.into_response(),
        }
    }

    let guarded = Router::new()
        .route("/guarded", get(|| async { "inside" }))
        .route_layer(middleware::from_fn(require_login));
    let app = Router::new()
        .route("/login", post(login))
        .route("/question-mark", get(with_question_mark))
        .route("/unwrap", get(with_unwrap))
        .route("/default", get(with_default))
        .route("/optional", get(optional))
        .merge(guarded)
        .layer(SessionLayer::new(InMemoryBackend::new()))
        .route("/outside", get(optional));

    let (_, cookie, _) = call(&app, "POST", None, "/login").await;
    let cookie = cookie.expect("the login sets the cookie");
    for (path, expected) in [
        ("/question-mark", "Some(42)"),
        ("/unwrap", "Some(42)"),
        ("/default", "42"),
        ("/optional", "Some(42)"),
        ("/guarded", "inside"),
    ] {
        let (status, _, body) = call(&app, "GET", Some(&cookie), path).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, expected),
            "{path}"
        );
    }
    let (status, _, _) = call(&app, "GET", None, "/guarded").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous: refused");
    let (_, _, body) = call(&app, "GET", Some(&cookie), "/outside").await;
    assert_eq!(body, "no layer", "Option<Session> outside the layer");
}
