//! Autoload on chosen routes: path prefixes, regular expressions, and `LoadSessionLayer` under
//! `route_layer`. Other routes keep the explicit `load().await` (an unloaded read there is
//! `NotLoaded`).

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, LoadSessionLayer, Session, SessionLayer};
use tower::ServiceExt;

/// Reads the session without loading it: 200 when it was autoloaded, 500 NotLoaded when not.
async fn unloaded_read(session: Session) -> Result<&'static str, Error> {
    session.get::<u64>("n")?;
    Ok("loaded")
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
    assert_eq!(
        status(&app, "/accounts").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(status(&app, "/").await, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn patterns_autoload_matching_routes_and_no_others() {
    let app = routes().layer(
        SessionLayer::builder(InMemoryBackend::new())
            .with_autoload_patterns([r"^/shop/\d+$"])
            .build()
            .unwrap(),
    );
    assert_eq!(status(&app, "/shop/42").await, StatusCode::OK);
    assert_eq!(
        status(&app, "/shop/x").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        status(&app, "/account").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

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
        ("/accounts", StatusCode::INTERNAL_SERVER_ERROR),
        ("/", StatusCode::INTERNAL_SERVER_ERROR),
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

#[tokio::test]
async fn load_session_layer_loads_for_the_routes_it_wraps() {
    let app = Router::new()
        .route("/account", get(unloaded_read))
        .route_layer(LoadSessionLayer)
        .route("/", get(unloaded_read))
        .layer(SessionLayer::new(InMemoryBackend::new()));
    assert_eq!(status(&app, "/account").await, StatusCode::OK);
    assert_eq!(status(&app, "/").await, StatusCode::INTERNAL_SERVER_ERROR);
}
