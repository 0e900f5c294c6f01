//! Helpers for tests that drive a service with tower's `oneshot`, without a browser or a
//! cookie store: carry the session cookie from one response to the next request yourself.
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, header::COOKIE};
//! use sessions_memory::InMemoryBackend;
//! use sessions_tower::{Error, LoadedSession, SessionLayer, testing::cookie_from};
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
        .filter(|cookie| cookie.max_age().is_none_or(|age| !age.is_zero()))
        .map(|cookie| format!("{}={}", cookie.name(), cookie.value()))
}
