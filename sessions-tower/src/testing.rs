//! Testing an app without a browser or a socket: [`TestClient`] (feature `axum`) sends
//! requests through an axum `Router` and keeps the cookies its answers set, as a browser
//! would; [`cookie_from`] reads a cookie off any response, for tests with tower alone.
//!
//! ```
//! use axum::{Form, Router, routing::{get, post}};
//! use sessionkit_memory::InMemoryBackend;
//! use sessionkit_tower::{Error, Session, SessionLayer, testing::TestClient};
//!
//! #[derive(serde::Deserialize)]
//! struct Login { user: String }
//!
//! async fn login(session: Session, Form(form): Form<Login>) -> Result<&'static str, Error> {
//!     session.regenerate_id()?;
//!     session.insert("user", form.user)?;
//!     Ok("welcome")
//! }
//!
//! async fn whoami(session: Session) -> Result<String, Error> {
//!     Ok(session.get::<String>("user")?.unwrap_or_else(|| "anonymous".into()))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let app = Router::new()
//!     .route("/login", post(login))
//!     .route("/", get(whoami))
//!     .layer(SessionLayer::new(InMemoryBackend::new()));
//! let client = TestClient::new(app);
//! assert_eq!(client.get("/").await.body, "anonymous");
//! assert_eq!(client.post_form("/login", "user=ada").await.body, "welcome");
//! assert_eq!(client.get("/").await.body, "ada"); // the cookie went back
//! # });
//! ```
//!
//! The same with tower alone, carrying the cookie by hand:
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, header::COOKIE};
//! use sessionkit_memory::InMemoryBackend;
//! use sessionkit_tower::{Error, Session, SessionLayer, testing::cookie_from};
//! use tower::ServiceExt;
//!
//! async fn count(session: Session) -> Result<String, Error> {
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
        .filter(|cookie| !removes(cookie))
        .map(|cookie| format!("{}={}", cookie.name(), cookie.value()))
}

/// Whether `cookie` removes the cookie from the browser (`Max-Age=0`).
fn removes(cookie: &Cookie<'_>) -> bool {
    cookie.max_age().is_some_and(|age| age.is_zero())
}

#[cfg(feature = "axum")]
pub use client::{TestClient, TestResponse};

#[cfg(feature = "axum")]
mod client {
    use super::removes;
    use ::cookie::Cookie;
    use axum::body::Body;
    use http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
    use http::{HeaderMap, Method, Request, StatusCode};
    use std::collections::BTreeMap;
    use std::sync::{Mutex, PoisonError};
    use tower::ServiceExt;

    /// A client for tests that sends requests through an axum `Router` and keeps the cookies
    /// its answers set, applying each answer's `Set-Cookie` headers in the order the answers
    /// arrive, as a browser does: a cookie set is sent with every later request, one removed
    /// (`Max-Age=0`) is not. Cookies are kept by name; their `Path`, `Domain` and expiry are
    /// not followed.
    ///
    /// Requests can run at the same time (`&self`), to test overlapping requests of one
    /// session. Cloning gives a client on the same app with the same cookies, at the moment
    /// of the clone (a second browser started from the first one's profile).
    ///
    /// The methods panic when a request cannot be built (an invalid path) or a body cannot be
    /// read: they are test helpers, meant to fail the test.
    #[derive(Debug)]
    pub struct TestClient {
        app: axum::Router,
        cookies: Mutex<BTreeMap<String, String>>,
    }

    impl Clone for TestClient {
        fn clone(&self) -> Self {
            TestClient {
                app: self.app.clone(),
                cookies: Mutex::new(self.jar().clone()),
            }
        }
    }

    /// An answer as a test looks at it.
    #[derive(Clone, Debug)]
    #[non_exhaustive]
    pub struct TestResponse {
        /// The status code.
        pub status: StatusCode,
        /// The headers.
        pub headers: HeaderMap,
        /// The body, as text (lossily, if it is not UTF-8).
        pub body: String,
    }

    impl TestResponse {
        /// The `Set-Cookie` header for the cookie `name`, whole, when the answer has one.
        pub fn set_cookie(&self, name: &str) -> Option<&str> {
            self.headers
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .find(|value| Cookie::parse(*value).is_ok_and(|cookie| cookie.name() == name))
        }
    }

    impl TestClient {
        /// A client for `app`, with no cookies yet.
        pub fn new(app: axum::Router) -> Self {
            TestClient {
                app,
                cookies: Mutex::new(BTreeMap::new()),
            }
        }

        fn jar(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
            self.cookies.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// The value of the cookie `name` as the client holds it now.
        pub fn cookie(&self, name: &str) -> Option<String> {
            self.jar().get(name).cloned()
        }

        /// Hold the cookie `name` with `value` (a cookie planted by someone else, or an old
        /// one sent again); `None` forgets it.
        pub fn set_cookie(&self, name: &str, value: Option<&str>) {
            match value {
                Some(value) => self.jar().insert(name.to_owned(), value.to_owned()),
                None => self.jar().remove(name),
            };
        }

        /// `GET path`.
        pub async fn get(&self, path: &str) -> TestResponse {
            self.send(Method::GET, path, None).await
        }

        /// `POST path` with an empty body.
        pub async fn post(&self, path: &str) -> TestResponse {
            self.send(Method::POST, path, None).await
        }

        /// `POST path` with a form body, already encoded (`user=ada&remember=on`), as a
        /// browser submits an HTML form.
        pub async fn post_form(&self, path: &str, form: &str) -> TestResponse {
            let body = ("application/x-www-form-urlencoded", form.to_owned());
            self.send(Method::POST, path, Some(body)).await
        }

        /// `POST path` with `json` as a JSON body.
        pub async fn post_json(&self, path: &str, json: &impl serde::Serialize) -> TestResponse {
            let json = match serde_json::to_string(json) {
                Ok(json) => json,
                Err(e) => panic!("testing: the JSON body for {path:?} does not serialize: {e}"),
            };
            self.send(Method::POST, path, Some(("application/json", json)))
                .await
        }

        /// Send `request` as it is, with the client's cookies added, and keep the cookies
        /// its answer sets.
        pub async fn request(&self, mut request: Request<Body>) -> TestResponse {
            let cookies = self
                .jar()
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            if !cookies.is_empty() {
                match http::HeaderValue::try_from(cookies) {
                    Ok(value) => {
                        request.headers_mut().insert(COOKIE, value);
                    }
                    Err(e) => panic!("testing: the cookies held are not a valid header: {e}"),
                }
            }
            let response = match self.app.clone().oneshot(request).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            };
            let (parts, body) = response.into_parts();
            self.keep_cookies(&parts.headers);
            let body = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(body) => body,
                Err(e) => panic!("testing: the body could not be read: {e}"),
            };
            TestResponse {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        }

        async fn send(
            &self,
            method: Method,
            path: &str,
            body: Option<(&str, String)>,
        ) -> TestResponse {
            let mut request = Request::builder().method(method).uri(path);
            let body = match body {
                Some((content_type, body)) => {
                    request = request.header(CONTENT_TYPE, content_type);
                    Body::from(body)
                }
                None => Body::empty(),
            };
            match request.body(body) {
                Ok(request) => self.request(request).await,
                Err(e) => panic!("testing: not a valid request for {path:?}: {e}"),
            }
        }

        /// Apply an answer's `Set-Cookie` headers, in order.
        fn keep_cookies(&self, headers: &HeaderMap) {
            let mut jar = self.jar();
            for value in headers.get_all(SET_COOKIE) {
                let Some(cookie) = value.to_str().ok().and_then(|v| Cookie::parse(v).ok()) else {
                    continue;
                };
                if removes(&cookie) {
                    jar.remove(cookie.name());
                } else {
                    jar.insert(cookie.name().to_owned(), cookie.value().to_owned());
                }
            }
        }
    }
}
