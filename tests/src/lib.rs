//! End-to-end tests of the `sessions` workspace live in `tests/`; this library holds what the
//! README's code samples share, and compiles the README itself as doctests.
//!
//! # Features
//!
//! This package has no Cargo features.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// The README: every ```` ```rust ```` block in it is compiled, and run unless marked
/// `no_run`, by `cargo test --doc` (part of `./scripts/test`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct Readme;

/// Helpers for the README's samples, kept out of sight by `# ` lines: they send requests
/// through a router in this process, no socket involved.
#[doc(hidden)]
pub mod readme {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, Request, header};
    use std::future::Future;
    use tower::ServiceExt;

    /// What a sample looks at in a response.
    #[derive(Debug)]
    pub struct Reply {
        /// The status code.
        pub status: u16,
        /// The body, as text.
        pub body: String,
        /// The `Set-Cookie` header, when there is one.
        pub set_cookie: Option<String>,
    }

    impl Reply {
        /// The `name=value` part of the `Set-Cookie` header, to send back as `Cookie`.
        pub fn cookie(&self) -> String {
            let set_cookie = self.set_cookie.as_deref().expect("a Set-Cookie header");
            set_cookie.split(';').next().unwrap_or_default().to_owned()
        }
    }

    /// `GET path` through `app`, with `cookie` as the `Cookie` header.
    pub async fn get(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
        send(app, Method::GET, path, cookie).await
    }

    /// `POST path` (empty body) through `app`, with `cookie` as the `Cookie` header.
    pub async fn post(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
        send(app, Method::POST, path, cookie).await
    }

    async fn send(app: &Router, method: Method, path: &str, cookie: Option<&str>) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let request = request.body(Body::empty()).expect("a request");
        let response = app.clone().oneshot(request).await.expect("a response");
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().expect("an ASCII Set-Cookie").to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            set_cookie,
        }
    }

    /// Run `future` on a fresh tokio runtime, as `#[tokio::main]` would.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(future)
    }
}
