//! Autoload on chosen routes: path prefixes and regular expressions. The layer loads the
//! session of those routes before the inner service runs; on other routes a handler holding
//! the `LazySession` finds it not loaded.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{LazySession, SessionLayer};
use tower::ServiceExt;

/// Whether the layer loaded the session before the handler ran: 200 when it did, 409 when not.
async fn unloaded_read(session: LazySession) -> StatusCode {
    if session.is_loaded() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    }
}

fn routes() -> Router {
    [
        "/account",
        "/account/orders",
        "/accounts",
        "/shop/42",
        "/shop/x",
        "/",
    ]
    .into_iter()
    .fold(Router::new(), |router, path| {
        router.route(path, get(unloaded_read))
    })
}

async fn status(app: &Router, path: &str) -> StatusCode {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn prefixes_autoload_their_routes_and_no_others() {
    let app = routes().layer(
        SessionLayer::builder(InMemoryBackend::new())
            .with_autoload_paths(["/account"])
            .build()
            .unwrap(),
    );
    assert_eq!(status(&app, "/account").await, StatusCode::OK);
    assert_eq!(status(&app, "/account/orders").await, StatusCode::OK);
    assert_eq!(status(&app, "/accounts").await, StatusCode::CONFLICT);
    assert_eq!(status(&app, "/").await, StatusCode::CONFLICT);
}

#[cfg(feature = "regex")]
#[tokio::test]
async fn patterns_autoload_matching_routes_and_no_others() {
    let app = routes().layer(
        SessionLayer::builder(InMemoryBackend::new())
            .with_autoload_patterns([r"^/shop/\d+$"])
            .build()
            .unwrap(),
    );
    assert_eq!(status(&app, "/shop/42").await, StatusCode::OK);
    assert_eq!(status(&app, "/shop/x").await, StatusCode::CONFLICT);
    assert_eq!(status(&app, "/account").await, StatusCode::CONFLICT);
}

#[cfg(feature = "regex")]
#[tokio::test]
async fn prefixes_and_patterns_together_and_bad_ones_refused() {
    let app = routes().layer(
        SessionLayer::builder(InMemoryBackend::new())
            .with_autoload_paths(["/account"])
            .with_autoload_patterns([r"^/shop/\d+$"])
            .build()
            .unwrap(),
    );
    for (path, expected) in [
        ("/account/orders", StatusCode::OK),
        ("/shop/42", StatusCode::OK),
        ("/accounts", StatusCode::CONFLICT),
        ("/", StatusCode::CONFLICT),
    ] {
        assert_eq!(status(&app, path).await, expected, "{path}");
    }
    assert!(
        SessionLayer::builder(InMemoryBackend::new())
            .with_autoload_paths(["account"])
            .build()
            .is_err()
    );
    assert!(
        SessionLayer::builder(InMemoryBackend::new())
            .with_autoload_patterns(["(unclosed"])
            .build()
            .is_err()
    );
}
