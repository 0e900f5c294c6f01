//! The middleware driven in-process through `tower::ServiceExt`, without a socket.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, LazySession, Session, SessionLayer};
use tower::ServiceExt;

async fn count(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

fn app(layer: SessionLayer<InMemoryBackend>) -> Router {
    Router::new()
        .route("/count", get(count))
        .route("/plain", get(|| async { "plain" }))
        .route(
            "/read",
            get(|s: Session| async move { s.get::<u64>("n").map(|n| format!("{n:?}")) }),
        )
        .route(
            "/lazy",
            get(|s: LazySession| async move { if s.is_loaded() { "loaded" } else { "lazy" } }),
        )
        .layer(layer)
}

async fn send(app: &Router, path: &str, cookie: Option<&str>) -> http::Response<Body> {
    let mut req = Request::get(path);
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn set_cookie(res: &http::Response<Body>) -> Option<String> {
    res.headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
}

async fn text(res: http::Response<Body>) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn counter_counts_across_requests() {
    let app = app(SessionLayer::new(InMemoryBackend::new()));
    let first = send(&app, "/count", None).await;
    let cookie = set_cookie(&first).expect("first write sets the cookie");
    assert_eq!(first.headers()[header::VARY], "Cookie");
    assert_eq!(text(first).await, "1");
    let second = send(&app, "/count", Some(&cookie)).await;
    assert_eq!(set_cookie(&second).as_deref(), Some(cookie.as_str()));
    assert_eq!(text(second).await, "2");
}

#[tokio::test]
async fn untouched_session_costs_no_headers() {
    let app = app(SessionLayer::new(InMemoryBackend::new()));
    let res = send(&app, "/plain", Some("session=whatever")).await;
    assert!(res.headers().get(header::SET_COOKIE).is_none());
    assert!(res.headers().get(header::VARY).is_none());
}

#[tokio::test]
async fn a_handler_taking_the_session_reads_it_loaded_without_autoload() {
    let app = app(SessionLayer::new(InMemoryBackend::new()));
    let first = send(&app, "/count", None).await;
    let cookie = set_cookie(&first).unwrap();
    let res = send(&app, "/read", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "Some(1)");
    let res = send(&app, "/lazy", Some(&cookie)).await;
    assert_eq!(
        text(res).await,
        "lazy",
        "no autoload: the lazy session is not read"
    );
}

#[tokio::test]
async fn autoload_loads_before_the_handler() {
    let app = app(SessionLayer::builder(InMemoryBackend::new())
        .with_autoload(true)
        .build()
        .unwrap());
    let first = send(&app, "/count", None).await;
    let cookie = set_cookie(&first).unwrap();
    for cookie in [Some(cookie.as_str()), None] {
        let res = send(&app, "/lazy", cookie).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, "loaded");
    }
}
