//! How the request's session reaches the code the layer wraps: through the request's
//! extensions, like any per-request value in tower. Each test is a setup that an ambient
//! (thread-local) session got wrong.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, LazySession, Session, SessionLayer};
use std::sync::Arc;
use tokio::sync::oneshot;
use tower::{ServiceBuilder, ServiceExt, service_fn};

async fn count(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn send(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut req = http::Request::get(path);
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, cookie, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Counts twice through `app` at `path` and checks the second request sees the first's write.
async fn counts(app: &Router, path: &str) {
    let (status, cookie, body) = send(app, path, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "1"), "{path}");
    let cookie = cookie.expect("the first write sets the cookie");
    let (status, _, body) = send(app, path, Some(&cookie)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "2"), "{path}");
}

#[tokio::test]
async fn a_handler_run_in_a_spawned_task_by_inner_middleware_gets_the_session() {
    async fn detach(req: Request, next: Next) -> Response {
        match tokio::spawn(next.run(req)).await {
            Ok(response) => response,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
    let app = Router::new()
        .route("/", get(count))
        .layer(middleware::from_fn(detach))
        .layer(SessionLayer::new(InMemoryBackend::new()));
    counts(&app, "/").await;
}

#[tokio::test]
async fn the_cookie_path_is_judged_on_the_path_the_client_asked_for_under_nest() {
    let admin = Router::new()
        .route("/", get(count))
        .route("/count", get(count))
        .layer(
            SessionLayer::builder(InMemoryBackend::new())
                .with_path("/admin")
                .build()
                .unwrap(),
        );
    let app = Router::new()
        .nest("/admin", admin)
        .route("/public", get(|| async { "public" }));
    counts(&app, "/admin/count").await;
    let (_, cookie, _) = send(&app, "/admin/count", None).await;
    assert!(cookie.is_some(), "set inside the nested path");
    let (status, cookie, _) = send(&app, "/public", Some("session=whatever")).await;
    assert_eq!((status, cookie), (StatusCode::OK, None));
}

#[tokio::test]
async fn outside_the_cookie_path_a_handler_taking_the_session_gets_the_clear_error() {
    let app = Router::new()
        .route("/admin", get(count))
        .route("/public", get(count))
        .layer(
            SessionLayer::builder(InMemoryBackend::new())
                .with_path("/admin")
                .build()
                .unwrap(),
        );
    let (status, cookie, body) = send(&app, "/public", Some("session=whatever")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(cookie, None, "no cookie is set or removed outside the path");
    assert_eq!(body, Error::MissingLayer.to_string());
}

#[tokio::test]
async fn nested_layers_with_disjoint_paths_each_hand_out_their_own_session() {
    let outer = InMemoryBackend::new();
    let inner = InMemoryBackend::new();
    let admin = Router::new().route("/admin", get(count)).layer(
        SessionLayer::builder(inner.clone())
            .with_cookie_name("admin")
            .with_path("/admin")
            .build()
            .unwrap(),
    );
    let app = Router::new().route("/", get(count)).merge(admin).layer(
        SessionLayer::builder(outer.clone())
            .with_cookie_name("site")
            .build()
            .unwrap(),
    );
    counts(&app, "/").await;
    counts(&app, "/admin").await;
    assert_eq!(
        outer.len(),
        1,
        "only the site's session is in the outer store"
    );
    assert_eq!(
        inner.len(),
        1,
        "only the admin session is in the inner store"
    );
    let (_, cookie, _) = send(&app, "/admin", None).await;
    assert!(cookie.unwrap().starts_with("admin="));
}

#[tokio::test]
async fn a_write_after_the_response_is_an_error_not_a_silent_loss() {
    let (tx, rx) = oneshot::channel::<Result<(), Error>>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let (go, wait) = oneshot::channel::<()>();
    let wait = Arc::new(std::sync::Mutex::new(Some(wait)));
    let handler = move |session: Session| {
        let tx = tx.lock().unwrap().take().unwrap();
        let wait = wait.lock().unwrap().take().unwrap();
        async move {
            session.insert("n", 1)?;
            tokio::spawn(async move {
                let _ = wait.await;
                let _ = tx.send(session.insert("late", true));
            });
            Ok::<_, Error>("sent")
        }
    };
    let backend = InMemoryBackend::new();
    let app = Router::new()
        .route("/", get(handler))
        .layer(SessionLayer::new(backend.clone()));
    let (status, cookie, _) = send(&app, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cookie.is_some());
    go.send(()).unwrap();
    let late = rx.await.unwrap();
    assert!(matches!(late, Err(Error::Committed)), "{late:?}");
}

#[tokio::test]
async fn a_plain_tower_service_reads_the_session_from_the_extensions() {
    let service = ServiceBuilder::new()
        .layer(SessionLayer::new(InMemoryBackend::new()))
        .service(service_fn(|req: http::Request<String>| async move {
            let lazy = req
                .extensions()
                .get::<LazySession>()
                .cloned()
                .ok_or(Error::MissingLayer)?;
            lazy.load().await?.insert("seen", true)?;
            Ok::<_, Error>(http::Response::new(String::from("ok")))
        }));
    let res = service
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key(header::SET_COOKIE));
}

#[tokio::test]
async fn a_server_error_saves_none_of_the_handlers_changes() {
    let backend = InMemoryBackend::new();
    let app = Router::new()
        .route("/", get(count))
        .route(
            "/fail",
            get(|session: Session| async move {
                session.insert("n", 100)?;
                Ok::<_, Error>((StatusCode::SERVICE_UNAVAILABLE, "try later"))
            }),
        )
        .layer(SessionLayer::new(backend.clone()));
    let (_, cookie, _) = send(&app, "/", None).await;
    let cookie = cookie.unwrap();
    let (status, set, _) = send(&app, "/fail", Some(&cookie)).await;
    assert_eq!((status, set), (StatusCode::SERVICE_UNAVAILABLE, None));
    let (_, _, body) = send(&app, "/", Some(&cookie)).await;
    assert_eq!(body, "2", "the failed request's write was not saved");
    let (status, set, _) = send(&app, "/fail", None).await;
    assert_eq!((status, set), (StatusCode::SERVICE_UNAVAILABLE, None));
    assert_eq!(
        backend.len(),
        1,
        "no session was created by the failing request"
    );
}

#[tokio::test]
async fn a_handler_that_panics_under_catch_panic_inside_the_layer_saves_nothing() {
    let backend = InMemoryBackend::new();
    let app = Router::new()
        .route("/", get(count))
        .route(
            "/panic",
            get(|session: Session| async move {
                session.insert("n", 100).unwrap();
                if session.get::<u64>("n").unwrap() == Some(100) {
                    panic!("the handler failed halfway");
                }
                "unreachable"
            }),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(SessionLayer::new(backend.clone()));
    let (_, cookie, _) = send(&app, "/", None).await;
    let cookie = cookie.unwrap();
    let (status, set, _) = send(&app, "/panic", Some(&cookie)).await;
    assert_eq!((status, set), (StatusCode::INTERNAL_SERVER_ERROR, None));
    let (_, _, body) = send(&app, "/", Some(&cookie)).await;
    assert_eq!(body, "2", "the panicking request's write was not saved");
}

/// A handler that writes `n = 100`, then takes longer than the timeout around it.
fn slow_writer(
    timeout: tower_http::timeout::TimeoutLayer,
    inside: bool,
) -> (Router, InMemoryBackend) {
    let backend = InMemoryBackend::new();
    let routes = Router::new().route("/", get(count)).route(
        "/slow",
        get(|session: Session| async move {
            session.insert("n", 100)?;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Ok::<_, Error>("late")
        }),
    );
    let app = if inside {
        routes
            .layer(timeout)
            .layer(SessionLayer::new(backend.clone()))
    } else {
        routes
            .layer(SessionLayer::new(backend.clone()))
            .layer(timeout)
    };
    (app, backend)
}

/// The guide's advice on timeout layers, checked: inside the session layer, tower-http's 408
/// is an answer like any other and the half-made change is saved; outside it (or answering a
/// 5xx inside), nothing is.
#[tokio::test]
async fn what_a_timed_out_request_saves_depends_on_where_the_timeout_sits() {
    use tower_http::timeout::TimeoutLayer;
    let limit = std::time::Duration::from_millis(20);
    for (timeout, inside, status, saved) in [
        (
            TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit),
            true,
            StatusCode::REQUEST_TIMEOUT,
            true,
        ),
        (
            TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limit),
            true,
            StatusCode::SERVICE_UNAVAILABLE,
            false,
        ),
        (
            TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit),
            false,
            StatusCode::REQUEST_TIMEOUT,
            false,
        ),
    ] {
        let (app, _backend) = slow_writer(timeout, inside);
        let (_, cookie, _) = send(&app, "/", None).await;
        let cookie = cookie.unwrap();
        let (answered, _, _) = send(&app, "/slow", Some(&cookie)).await;
        assert_eq!(answered, status);
        let (_, _, body) = send(&app, "/", Some(&cookie)).await;
        let expected = if saved { "101" } else { "2" };
        assert_eq!(
            body, expected,
            "timeout inside: {inside}, answered {status}"
        );
    }
}

#[tokio::test]
async fn a_request_dropped_before_the_handler_answers_discards_the_session() {
    let (seen_tx, seen_rx) = oneshot::channel::<Session>();
    let seen_tx = Arc::new(std::sync::Mutex::new(Some(seen_tx)));
    let service = ServiceBuilder::new()
        .layer(SessionLayer::new(InMemoryBackend::new()))
        .service(service_fn(move |req: http::Request<String>| {
            let seen_tx = seen_tx.clone();
            async move {
                let lazy = req.extensions().get::<LazySession>().cloned().unwrap();
                let session = lazy.load().await?;
                if let Some(tx) = seen_tx.lock().unwrap().take() {
                    let _ = tx.send(session);
                }
                std::future::pending::<()>().await;
                Ok::<_, Error>(http::Response::new(String::new()))
            }
        }));
    let request = tokio::spawn(service.oneshot(http::Request::new(String::new())));
    let session = seen_rx.await.unwrap();
    request.abort();
    let _ = request.await;
    assert!(matches!(session.insert("n", 1), Err(Error::Committed)));
}

/// The backend a layer was built on is the one its sessions use.
#[tokio::test]
async fn sessions_are_stored_in_the_layers_own_backend() {
    let layer = SessionLayer::new(InMemoryBackend::new());
    let app = Router::new().route("/", get(count)).layer(layer.clone());
    let (_, cookie, _) = send(&app, "/", None).await;
    let cookie = cookie.unwrap();
    let id = cookie.split_once('=').unwrap().1;
    assert!(layer.backend().exists(id).await.unwrap());
}

#[tokio::test]
async fn background_work_opens_and_saves_a_session_through_the_layer() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_max_age(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let app = Router::new().route("/", get(count)).layer(layer.clone());
    let (_, cookie, _) = send(&app, "/", None).await;
    let cookie = cookie.unwrap();
    let id = cookie.split_once('=').unwrap().1;

    let session = layer.open(id).await.unwrap();
    assert_eq!(session.id().unwrap().expose(), id);
    assert_eq!(session.get::<u64>("n").unwrap(), Some(1));
    session.insert("n", 10).unwrap();
    layer.save(&session).await.unwrap();
    assert!(
        matches!(session.insert("n", 11), Err(Error::Committed)),
        "saved once"
    );
    assert!(matches!(layer.save(&session).await, Err(Error::Committed)));
    let (_, _, body) = send(&app, "/", Some(&cookie)).await;
    assert_eq!(
        body, "11",
        "the request sees what the background work saved"
    );

    // An id that names nothing opens empty and unstored.
    let missing = layer
        .open("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .unwrap();
    assert!(missing.id().is_none() && missing.is_empty());
}
