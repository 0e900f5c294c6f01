//! `cargo run -p sessionkit-app [-- --backend NAME]`: see the library's docs for the settings.

use sessionkit_app::{Config, USAGE, build};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // The library's `tracing` events (a failed save, a corrupt record) go to stderr; RUST_LOG
    // picks what shows, warnings and errors by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::from_env() {
        Ok(Some(config)) => config,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("sessionkit-app: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(warning) = config.insecure_warning() {
        eprintln!("sessionkit-app: warning: {warning}");
    }
    let app = match build(&config).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("sessionkit-app: the {} backend: {error}", config.backend);
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&config.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "sessionkit-app: cannot listen on {}: {error} (set ADDR to listen elsewhere)",
                config.addr
            );
            return ExitCode::FAILURE;
        }
    };
    let url = match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(_) => format!("http://{}", config.addr),
    };
    println!("sessionkit-app: sessions in {}", app.storage);
    println!("sessionkit-app: serving on {url} (Ctrl-C stops)");
    let served = axum::serve(listener, app.router.clone())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    // Keeps the SQL cleanup task running as long as the server.
    drop(app);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sessionkit-app: the server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
