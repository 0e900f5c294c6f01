//! `creates <empty|full> <n>`: the cost of creating a session (a request without a cookie to a
//! handler that writes the session) on the memory backend's default store, empty or full
//! (filled to `DEFAULT_MAX_SESSIONS` before measuring, so that every measured create evicts).
//! Run under callgrind with `--toggle-collect='*measured_loop*'`; `bench/creates.sh` does,
//! and prints the full store's cost over the empty one's.

use axum::body::Body;
use http::Request;
use sessionkit_bench::our_routes;
use sessionkit_core::{SessionBackend, SessionData};
use sessionkit_memory::{DEFAULT_MAX_SESSIONS, InMemoryBackend};
use sessionkit_tower::SessionLayer;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// The measured requests. Never inlined, so callgrind can switch collection on exactly for
/// its duration.
#[inline(never)]
fn measured_loop(
    runtime: &tokio::runtime::Runtime,
    app: &axum::Router,
    requests: Vec<Request<Body>>,
) -> Duration {
    let started = Instant::now();
    runtime.block_on(async {
        for request in requests {
            let response = app.clone().oneshot(request).await.expect("infallible");
            assert!(response.status().is_success(), "{}", response.status());
            black_box(response);
        }
    });
    started.elapsed()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [fill, n] = args.as_slice() else {
        eprintln!("usage: creates <empty|full> <n>");
        return ExitCode::from(2);
    };
    let (full, Ok(n)) = (fill == "full", n.parse::<usize>()) else {
        eprintln!("usage: creates <empty|full> <n>");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let backend = InMemoryBackend::new();
    if full {
        let mut data = SessionData::default();
        data.values_mut().insert("n".into(), 1.into());
        let ttl = Some(Duration::from_secs(3600));
        runtime.block_on(async {
            for _ in 0..DEFAULT_MAX_SESSIONS {
                backend.create(&data, ttl).await.expect("a write");
            }
        });
        assert_eq!(backend.len(), DEFAULT_MAX_SESSIONS);
    }
    let app = our_routes()
        .layer(SessionLayer::new(backend.clone()))
        .with_state(());
    let requests: Vec<_> = (0..n)
        .map(|_| {
            Request::get("/incr")
                .body(Body::empty())
                .expect("a request")
        })
        .collect();
    let elapsed = measured_loop(&runtime, &app, requests);
    let expected = if full { DEFAULT_MAX_SESSIONS } else { n };
    assert_eq!(backend.len(), expected.min(DEFAULT_MAX_SESSIONS));
    println!(
        "RESULT store={fill} n={n} ns_per_create={:.0} sessions={}",
        elapsed.as_nanos() as f64 / n as f64,
        backend.len()
    );
    ExitCode::SUCCESS
}
