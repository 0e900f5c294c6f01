//! A visit counter: each browser gets its own count, kept in an in-memory session.
//!
//! Run it with `cargo run -p counter` and open <http://127.0.0.1:3000>.
//! `ADDR=127.0.0.1:8080 cargo run -p counter` serves elsewhere.

use axum::Router;
use axum::response::Html;
use axum::routing::{get, post};
use sessions_memory::InMemoryBackend;
use sessions_tower::{Error, Session, SessionLayer};

async fn index(session: Session) -> Result<Html<String>, Error> {
    session.load().await?;
    let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(Html(format!(
        "<!doctype html><title>Counter</title>\
         <h1>You have visited this page {visits} time{s}.</h1>\
         <form method=post action=/reset><button>Reset</button></form>",
        s = if visits == 1 { "" } else { "s" }
    )))
}

async fn reset(session: Session) -> Result<Html<&'static str>, Error> {
    // Ends the session: the record is removed and the browser's cookie expired.
    session.delete().await?;
    Ok(Html(
        "<!doctype html><title>Counter</title><p>Session ended. <a href=/>Start again</a></p>",
    ))
}

fn app() -> Router {
    let sessions = SessionLayer::new(InMemoryBackend::new().with_max_sessions(100_000))
        // This demo serves plain HTTP; keep the default (`Secure`) behind HTTPS.
        .with_secure(false);
    Router::new()
        .route("/", get(index))
        .route("/reset", post(reset))
        .layer(sessions)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("counter: serving on http://{}", listener.local_addr()?);
    axum::serve(listener, app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
