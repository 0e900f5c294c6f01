//! `cargo run -p admin`: see the library's docs.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    // SESSION_DOMAIN=example.com shares the cookie with example.com's subdomains; unset (as a
    // local run needs) the cookie stays with the host that set it.
    let domain = std::env::var("SESSION_DOMAIN")
        .ok()
        .filter(|d| !d.is_empty());
    let app = match admin::router(domain.as_deref()) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("admin: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("admin: cannot listen on {addr}: {error} (set ADDR to listen elsewhere)");
            return ExitCode::FAILURE;
        }
    };
    println!("admin: serving on http://{addr}/admin (Ctrl-C stops)");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("admin: the server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
