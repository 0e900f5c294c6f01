//! `serve <variant> <addr> <cookies-file> [sessions]`: serve one stack over HTTP/1.1 with
//! `axum::serve` on a current-thread tokio runtime, for a load test on loopback.
//!
//! Before serving, it creates `sessions` sessions (default 2000) through the stack (each holds
//! `n = 1`) and writes their `Cookie` header values to `cookies-file`, one per line, then prints
//! `LISTENING <addr>` (with the port, when `addr` asked for port 0). It serves `/`, `/read`
//! and `/incr` until SIGTERM or SIGINT, then removes what it stored and exits.
//!
//! `bench/redis.sh --http` runs it pinned to one core (`taskset -c 0`) and drives it with
//! `wrk` pinned to the other (`taskset -c 1`).

use sessionkit_bench::stores::{StoreFixture, StoreVariant};
use sessionkit_bench::{App, Scenario};
use std::io::Write;
use std::process::ExitCode;

fn usage() -> ExitCode {
    let variants: Vec<_> = StoreVariant::ALL.iter().map(|v| v.name()).collect();
    eprintln!(
        "usage: serve <variant> <addr> <cookies-file> [sessions]\n  variants: {}",
        variants.join(" ")
    );
    ExitCode::from(2)
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (variant, addr, file, sessions) = match args.as_slice() {
        [v, a, f] => (v, a, f, Some(2000)),
        [v, a, f, s] => (v, a, f, s.parse::<usize>().ok().filter(|&s| s > 0)),
        _ => return usage(),
    };
    let (Some(variant), Some(sessions)) = (StoreVariant::parse(variant), sessions) else {
        return usage();
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result: Result<(), String> = runtime.block_on(async {
        // Sessions are created with a counting request; the warm-up reads them back.
        let fixture = StoreFixture::new(variant, Scenario::Read, sessions, 200, None).await?;
        let mut out = std::fs::File::create(file).map_err(|e| format!("{file}: {e}"))?;
        for cookie in fixture.cookies() {
            writeln!(out, "{cookie}").map_err(|e| format!("{file}: {e}"))?;
        }
        drop(out);
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        println!("LISTENING {local}");
        let _ = std::io::stdout().flush();
        let App::Router(router) = fixture.app.clone() else {
            return Err("not a router".into());
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| format!("serve: {e}"))?;
        drop(fixture); // removes what it stored
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve {variant}: {e}");
            ExitCode::FAILURE
        }
    }
}
