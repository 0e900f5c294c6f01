//! `calls <variant> <scenario> <n>`: set up one variant and scenario, then send `n` requests
//! inside [`measured_loop`] and print the allocations per request (and, for a native run, a
//! rough time per request; criterion's `benches/time.rs` is the careful timing).
//!
//! Run it under callgrind with `--toggle-collect='*measured_loop*'` to count the instructions
//! of the measured requests only (setup and warm-up excluded); `bench/run.sh` does that for
//! every variant and scenario and divides by `n`.

use axum::body::Body;
use http::Request;
use sessionkit_bench::counting::{Counting, Counts};
use sessionkit_bench::{Fixture, Scenario, Variant};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The measured requests. Never inlined, so callgrind can switch collection on exactly for
/// its duration (`--toggle-collect='*measured_loop*'`).
#[inline(never)]
fn measured_loop(
    runtime: &tokio::runtime::Runtime,
    fixture: &Fixture,
    requests: Vec<Request<Body>>,
) -> Duration {
    black_box(runtime.block_on(fixture.app.run(requests)))
}

fn usage() -> ExitCode {
    let variants: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
    let scenarios: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
    eprintln!(
        "usage: calls <variant> <scenario> <n>\n  variants:  {} (and empty-layer, in a build \
         with --features floor)\n  scenarios: {}",
        variants.join(" "),
        scenarios.join(" ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [variant, scenario, n] = args.as_slice() else {
        return usage();
    };
    let (Some(variant), Some(scenario), Ok(n)) = (
        Variant::parse(variant),
        Scenario::parse(scenario),
        n.parse::<usize>(),
    ) else {
        return usage();
    };
    if n == 0 {
        return usage();
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let fixture = runtime.block_on(Fixture::new(variant, scenario));
    let requests = fixture.requests(n);

    let before = Counts::now();
    let elapsed = measured_loop(&runtime, &fixture, requests);
    let Counts {
        allocs,
        reallocs,
        bytes,
    } = Counts::since(before);

    let per = |count: u64| count as f64 / n as f64;
    println!(
        "RESULT variant={variant} scenario={scenario} n={n} allocs_per_req={:.2} \
         reallocs_per_req={:.2} bytes_per_req={:.0} ns_per_req={:.0}",
        per(allocs),
        per(reallocs),
        per(bytes),
        elapsed.as_nanos() as f64 / n as f64,
    );
    ExitCode::SUCCESS
}
