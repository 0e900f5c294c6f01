//! Session middleware for tower, axum and hyper, over any storage backend.
//!
//! [`SessionLayer`] gives every request its session, read from the request's cookie when a
//! handler asks for it, and saves it when the response goes out. Pick the backend crate you
//! need (`sessionkit-memory`, `sessionkit-cookie`, `sessionkit-redis`, `sessionkit-sql`) or
//! write one against `sessionkit-core`. This crate re-exports everything a handler or a test
//! names, so an application depends on it and one backend crate.
//!
//! These docs are the reference for the layer; the [`guide`] holds the how-tos: recipes,
//! the cookie's path and domain, each backend, logging in and out, a user's devices,
//! "remember me", time limits, and overlapping requests.
//!
//! ```
//! use axum::{Router, routing::get};
//! use sessionkit_memory::InMemoryBackend;
//! use sessionkit_tower::{Error, Session, SessionLayer};
//!
//! async fn count(session: Session) -> Result<String, Error> {
//!     let n: u64 = session.get("n")?.unwrap_or(0) + 1;
//!     session.insert("n", n)?; // saved when the response goes out
//!     Ok(n.to_string())
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(count))
//!     .layer(SessionLayer::new(InMemoryBackend::new()));
//! ```
//!
//! # Loading
//!
//! A handler that takes [`Session`] gets it loaded: the extractor reads it from the backend
//! before the handler runs (a client without a cookie costs no backend call). A request whose
//! handler doesn't take it costs no backend call at all. Middleware, and routes that read the
//! session only sometimes, take the [`LazySession`] instead, whose only way to the data is
//! [`load().await`](LazySession::load), so no code can read a session that was never loaded:
//!
//! ```
//! use axum::{extract::Request, middleware::Next, response::Response};
//! use sessionkit_tower::{Error, LazySession};
//!
//! async fn only_for_admin_paths(session: LazySession, req: Request, next: Next) -> Result<Response, Error> {
//!     if req.uri().path().starts_with("/admin") {
//!         let user: Option<String> = session.load().await?.get("user")?;
//!         // ... refuse the request when `user` is not an admin ...
//!     }
//!     Ok(next.run(req).await)
//! }
//! ```
//!
//! With [`with_autoload(true)`](SessionLayerBuilder::with_autoload) (or for chosen paths, as
//! in starsessions) the layer loads every request's session before the inner service runs;
//! a failed load answers a 500 there:
//!
//! ```
//! # use sessionkit_memory::InMemoryBackend; use sessionkit_tower::SessionLayer;
//! let layer = SessionLayer::builder(InMemoryBackend::new())
//!     .with_autoload(true)
//!     .build()?;
//! # Ok::<(), sessionkit_tower::Error>(())
//! ```
//!
//! # The cookie
//!
//! | option | default | meaning |
//! |---|---|---|
//! | [`with_cookie_name`](SessionLayerBuilder::with_cookie_name) | `session` | the cookie's name |
//! | [`with_path`](SessionLayerBuilder::with_path) | `/` | requests outside it get no session, and no cookie is read, set or removed on them; under axum's `Router::nest` the full path the client asked for (`OriginalUri`) is what counts |
//! | [`with_domain`](SessionLayerBuilder::with_domain) | none | `example.com` shares the session with its subdomains |
//! | [`with_max_age`](SessionLayerBuilder::with_max_age) | 14 days | also the record's TTL, renewed on each save; zero = a browser-session cookie |
//! | [`with_secure`](SessionLayerBuilder::with_secure) | on | HTTPS only |
//! | [`with_http_only`](SessionLayerBuilder::with_http_only) | on | hidden from page scripts |
//! | [`with_same_site`](SessionLayerBuilder::with_same_site) | `Lax` | `None` requires `Secure` |
//!
//! ```
//! # use sessionkit_memory::InMemoryBackend; use sessionkit_tower::{SameSite, SessionLayer};
//! # use std::time::Duration;
//! let admin_sessions = SessionLayer::builder(InMemoryBackend::new())
//!     .with_cookie_name("admin_session")
//!     .with_path("/admin")
//!     .with_domain("example.com")
//!     .with_max_age(Duration::ZERO) // gone when the browser closes
//!     .with_same_site(SameSite::Strict)
//!     .build()?;
//! // Setting an option never fails: `build` checks them all at once, so the order of the
//! // setters does not matter. `SameSite=None` and `__Host-` need `Secure`:
//! assert!(SessionLayer::builder(InMemoryBackend::new())
//!     .with_same_site(SameSite::None)
//!     .with_secure(false)
//!     .build()
//!     .is_err());
//! # Ok::<(), sessionkit_tower::Error>(())
//! ```
//!
//! # What happens on the way out
//!
//! - Untouched, or loaded and unchanged: no backend write, no `Set-Cookie` (except the
//!   idle timeout's refresh and the end of a probation, which save the session once more and
//!   re-send its cookie).
//! - Changed and not empty: saved, and the cookie set (its `Max-Age` renewed).
//! - Emptied or [deleted](Session::delete): the record is removed and the cookie expired
//!   (only for clients that sent one: anonymous clients get no header).
//! - [`regenerate_id`](Session::regenerate_id) (call it after a login): the data moves to a
//!   fresh id and the old record is removed, the defence against session fixation.
//! - A cookie naming a record the backend does not know is never adopted: a saved session
//!   gets a fresh id. A session removed meanwhile by another request (a logout) is not written
//!   back; its cookie is expired.
//! - Responses that used the session get `Vary: Cookie`.
//! - A failed save turns the response into an empty 500 and logs a `tracing` error; the
//!   client never gets a half-written cookie. Every storage failure answers the same way: a
//!   failed load in an extractor or in autoload, and a storage error a handler returns with
//!   `?` (the application's own mistakes, such as a route outside the layer, answer a 500
//!   whose body says how to fix them).
//! - A server error response (5xx) saves nothing: a handler that failed halfway, or panicked
//!   under tower-http's `CatchPanic` inside the layer, may have made half of its changes, and
//!   none of them is kept (Django's session middleware makes the same choice). A `delete()`
//!   already done stays done: it removed the record when it was called.
//! - Once the response is ready the session is committed: a clone changed later (by a task
//!   the handler spawned, or a streaming body) gets [`Error::Committed`] instead of losing the
//!   change silently. Work after the response opens the session again through the layer:
//!   [`SessionLayer::open`] and [`SessionLayer::save`].
//!
//! # Locked routes
//!
//! Overlapping requests of one session keep each other's changes to different keys; for the
//! same key the save that comes last wins. Routes that read a key and write it back (a
//! counter, a cart, a one-time token) take [`SessionLayer::lock`]'s layer with
//! `route_layer`: their requests of one session run one at a time, across processes, through
//! a lock the backend keeps. See [`SessionLockLayer`] for the lease, the wait and what a
//! request answers when it runs out of either.
//!
//! # Without axum
//!
//! The layer is plain tower: it wraps any `Service<http::Request<_>>`, such as a hyper
//! service, which finds the session in the request's extensions:
//!
//! ```
//! # use sessionkit_memory::InMemoryBackend; use sessionkit_tower::{Error, LazySession, SessionLayer};
//! use tower::{ServiceBuilder, service_fn};
//!
//! let service = ServiceBuilder::new()
//!     .layer(SessionLayer::new(InMemoryBackend::new()))
//!     .service(service_fn(|req: http::Request<String>| async move {
//!         let lazy = req.extensions().get::<LazySession>().cloned().ok_or(Error::MissingLayer)?;
//!         let n: u64 = lazy.load().await?.get("n")?.unwrap_or(0);
//!         Ok::<_, Error>(http::Response::new(n.to_string()))
//!     }));
//! ```
//!
//! The session is shared (one `Arc`): clones see the same session, so middleware between the
//! layer and the handler, a spawned `next.run(req)`, or a task the handler starts all see the
//! session the layer saves.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | on | [`Session`] and [`LazySession`] as axum extractors, [`Error`] as an axum response, the [`testing`] client |
//! | `cookie-backend` | on | [`SessionLayer::with_secret_key`]: signed cookie sessions from `sessionkit-cookie` |
//! | `regex` | off | `SessionLayerBuilder::with_autoload_patterns`: autoload on routes matching regular expressions |
//!
//! # The default backend
//!
//! As in starsessions, a secret key alone gives signed cookie sessions: the session travels in
//! the cookie, nothing is stored on the server.
//!
//! ```
//! # use sessionkit_tower::SessionLayer;
//! let secret = std::env::var("SESSION_SECRET")
//!     .unwrap_or_else(|_| "a long random secret of at least 32 bytes!".to_owned());
//! let layer = SessionLayer::with_secret_key(secret)?;
//! # Ok::<(), sessionkit_tower::Error>(())
//! ```
//!
//! A `Set-Cookie` over [`MAX_SET_COOKIE_BYTES`] (4096) is never sent: the save fails as a 500
//! with [`Error::CookieTooLarge`] in a `tracing` error.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod cookie;
pub mod guide;
mod layer;
mod lock;
mod service;
pub mod testing;

pub use layer::{SessionLayer, SessionLayerBuilder};
pub use lock::{SessionLock, SessionLockLayer};
pub use service::{MAX_SET_COOKIE_BYTES, ResponseFuture, SessionMiddleware};
pub use sessionkit_core::{
    Clock, DeviceId, Error, LazySession, Lifetime, Session, SessionBackend, SessionId, UserSession,
};

#[cfg(feature = "cookie-backend")]
pub use sessionkit_cookie::CookieBackend;

/// The cookie's `SameSite` attribute.
pub use ::cookie::SameSite;
