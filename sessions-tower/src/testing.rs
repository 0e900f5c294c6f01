//! Helpers for tests that drive a service with tower's `oneshot`, without a browser or a
//! cookie store: carry the session cookie from one response to the next request yourself.
//! [`cookie_from`] works with any tower service; [`get`] and [`post`] (feature `axum`) send a
//! request through an axum `Router` in one call:
//!
//! ```
//! use axum::{Router, routing::get};
//! use sessionkit_memory::InMemoryBackend;
//! use sessionkit_tower::{Error, LoadedSession, SessionLayer, testing};
//!
//! async fn count(session: LoadedSession) -> Result<String, Error> {
//!     let n: u64 = session.get("n")?.unwrap_or(0) + 1;
//!     session.insert("n", n)?;
//!     Ok(n.to_string())
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let app = Router::new()
//!     .route("/", get(count))
//!     .layer(SessionLayer::new(InMemoryBackend::new()));
//! let first = testing::get(&app, "/", None).await;
//! let cookie = first.cookie().expect("the first visit sets the cookie");
//! assert_eq!(testing::get(&app, "/", Some(&cookie)).await.body, "2");
//! # });
//! ```
//!
//! The same with tower alone:
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, header::COOKIE};
//! use sessionkit_memory::InMemoryBackend;
//! use sessionkit_tower::{Error, LoadedSession, SessionLayer, testing::cookie_from};
//! use tower::ServiceExt;
//!
//! async fn count(session: LoadedSession) -> Result<String, Error> {
//!     let n: u64 = session.get("n")?.unwrap_or(0) + 1;
//!     session.insert("n", n)?;
//!     Ok(n.to_string())
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let app = Router::new()
//!     .route("/", get(count))
//!     .layer(SessionLayer::new(InMemoryBackend::new()));
//!
//! let first = app.clone().oneshot(Request::get("/").body(Body::empty())?).await?;
//! let cookie = cookie_from(&first, "session").expect("the first visit sets the cookie");
//!
//! let second = Request::get("/").header(COOKIE, cookie).body(Body::empty())?;
//! let second = app.oneshot(second).await?;
//! let body = axum::body::to_bytes(second.into_body(), usize::MAX).await?;
//! assert_eq!(&body[..], b"2");
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use ::cookie::Cookie;
use http::Response;
use http::header::SET_COOKIE;

/// What a browser would send back in its `Cookie` header for the cookie `name` after
/// `response`: `name=value` from the response's `Set-Cookie`, or `None` when the response
/// sets no such cookie or removes it (`Max-Age=0`).
pub fn cookie_from<B>(response: &Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| Cookie::parse(value).ok())
        .find(|cookie| cookie.name() == name)
        .and_then(|cookie| sent_back(&cookie))
}

/// Whether `cookie` removes the cookie from the browser (`Max-Age=0`).
fn removes(cookie: &Cookie<'_>) -> bool {
    cookie.max_age().is_some_and(|age| age.is_zero())
}

/// The `name=value` a browser sends back after receiving `cookie`; `None` when it removes it.
fn sent_back(cookie: &Cookie<'_>) -> Option<String> {
    (!removes(cookie)).then(|| format!("{}={}", cookie.name(), cookie.value()))
}

/// A response as a test looks at it: what [`get`] and [`post`] return.
#[cfg(feature = "axum")]
#[derive(Clone, Debug)]
pub struct TestResponse {
    /// The status code.
    pub status: http::StatusCode,
    /// The body, as text (lossily, if it is not UTF-8).
    pub body: String,
    /// The first `Set-Cookie` header, whole, when there is one (the session's, in an app that
    /// sets no other cookie before it).
    pub set_cookie: Option<String>,
}

#[cfg(feature = "axum")]
impl TestResponse {
    /// The `name=value` of the [`set_cookie`](TestResponse::set_cookie) header, to send back
    /// as the next request's `Cookie`; `None` when there is none or it removes the cookie.
    pub fn cookie(&self) -> Option<String> {
        sent_back(&self.parsed_cookie()?)
    }

    /// Whether the response removes the cookie (`Max-Age=0`).
    pub fn removes_cookie(&self) -> bool {
        self.parsed_cookie().is_some_and(|cookie| removes(&cookie))
    }

    fn parsed_cookie(&self) -> Option<Cookie<'_>> {
        Cookie::parse(self.set_cookie.as_deref()?).ok()
    }
}

/// `GET path` through (a clone of) `app`, sending `cookie` (`name=value`, as
/// [`TestResponse::cookie`] gives it) as the `Cookie` header.
///
/// # Panics
///
/// When `path` is not a valid request target or the body cannot be read: a test helper,
/// meant to fail the test.
#[cfg(feature = "axum")]
pub async fn get(app: &axum::Router, path: &str, cookie: Option<&str>) -> TestResponse {
    send(app, http::Method::GET, path, cookie).await
}

/// `POST path` with an empty body, as [`get`] does.
///
/// # Panics
///
/// As [`get`].
#[cfg(feature = "axum")]
pub async fn post(app: &axum::Router, path: &str, cookie: Option<&str>) -> TestResponse {
    send(app, http::Method::POST, path, cookie).await
}

#[cfg(feature = "axum")]
async fn send(
    app: &axum::Router,
    method: http::Method,
    path: &str,
    cookie: Option<&str>,
) -> TestResponse {
    use tower::ServiceExt;
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    let request = match request.body(axum::body::Body::empty()) {
        Ok(request) => request,
        Err(e) => panic!("testing: not a valid request for {path:?}: {e}"),
    };
    let response = match app.clone().oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    };
    let status = response.status();
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(body) => body,
        Err(e) => panic!("testing: the body of {path:?} could not be read: {e}"),
    };
    TestResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookie,
    }
}
