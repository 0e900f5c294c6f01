//! An admin area with sessions of its own: starsessions' `path="/admin"` example.
//!
//! - The session cookie is named `admin_session` and has `Path=/admin`: the browser sends it
//!   to `/admin` and the pages under it only, and the layer gives no session to requests
//!   outside it. The public page `/` never sees a session cookie.
//! - `autoload` is on, as starsessions' `autoload=True`: the layer reads the session of every
//!   request under `/admin` before the inner service runs, so a storage failure answers a 500
//!   before any admin page code runs.
//! - The cookie's `Domain` is left unset unless [`router`] is given one: see there.
//!
//! ```sh
//! cargo run -p admin    # then open http://127.0.0.1:3000/admin
//! ```
//!
//! # Features
//!
//! This package has no Cargo features.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use axum::Router;
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, Session, SessionLayer};

/// The app: a public page at `/` and the admin area at `/admin`, whose session cookie is
/// scoped to `/admin`.
///
/// `domain` is the cookie's `Domain` attribute. `None` (what a local run needs) keeps the
/// cookie to the exact host that set it. `Some("example.com")` shares it with every subdomain
/// (`admin.example.com`, `www.example.com`): use that when the admin area is served from
/// several subdomains of one site, and never for a domain you do not fully control, since
/// every subdomain then receives the session. Browsers refuse a `Domain` the host is not
/// part of, and an IP address such as 127.0.0.1 cannot have one.
///
/// # Errors
///
/// A domain with characters a cookie attribute cannot hold is [`Error::Config`].
pub fn router(domain: Option<&str>) -> Result<Router, Error> {
    let mut sessions = SessionLayer::builder(InMemoryBackend::new().with_max_sessions(10_000))
        .with_cookie_name("admin_session")
        .with_path("/admin")
        .with_autoload(true)
        // Plain http://127.0.0.1 for the demo: behind HTTPS keep the default (`Secure`).
        .with_secure(false);
    if let Some(domain) = domain {
        sessions = sessions.with_domain(domain);
    }
    Ok(Router::new()
        .route("/", get(public))
        .route("/admin", get(dashboard))
        .route("/admin/logout", post(logout))
        .layer(sessions.build()?))
}

/// Outside the cookie's path: no session, no cookie, no backend call.
async fn public() -> Html<&'static str> {
    Html(
        "<!doctype html><meta charset=utf-8><title>Public</title>\
         <h1>Public page</h1><p>No session here: the session cookie is scoped to \
         <a href=/admin>/admin</a>.</p>",
    )
}

/// The admin dashboard: counts this session's visits.
async fn dashboard(session: Session) -> Result<Html<String>, Error> {
    let visits: u64 = session.get("admin_visits")?.unwrap_or(0) + 1;
    session.insert("admin_visits", visits)?;
    Ok(Html(format!(
        "<!doctype html><meta charset=utf-8><title>Admin</title>\
         <h1>Admin area</h1><p>Admin visits in this session: <b id=visits>{visits}</b></p>\
         <form method=post action=/admin/logout><button>End the admin session</button></form>\
         <p><a href=/>Public page</a></p>"
    )))
}

async fn logout(session: Session) -> Result<Redirect, Error> {
    session.delete().await?;
    Ok(Redirect::to("/admin"))
}
