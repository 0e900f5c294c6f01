//! `stores <variant> <scenario> <n> [--sessions S] [--time-ms T] [--count]`: one stack over a
//! session store outside the process's memory (Redis, SQLite, PostgreSQL), measured
//! in-process as `calls` measures the in-memory stacks.
//!
//! 1. Set up: `S` sessions (default 2000) created through the stack, 200 warm-up requests.
//! 2. `n` requests inside [`measured_loop`] (run under callgrind with
//!    `--toggle-collect='*measured_loop*'` for the client-side instructions of this thread,
//!    or with `--dump-before` on it and on [`measured_done`] for those of every thread of the
//!    process; a Redis or PostgreSQL server does its work in its own process and is not
//!    counted).
//!    Around that loop: heap allocations (a counting allocator) and, for Redis, the server's
//!    command counts (`INFO commandstats` deltas).
//! 3. With `--time-ms T` (for a native run): requests in timed batches of 500 for about `T`
//!    milliseconds; the median batch gives the time per request.
//!
//! With `--count` (a native run): sqlx's statements are counted (its statement log,
//! `src/statements.rs`), and PostgreSQL and Redis connections go through a relay that counts
//! round trips (`src/proxy.rs`); both are reported per measured request. (Redis' own command
//! counts also include what a server-side script runs, so they are not round trips.)
//!
//! Prints one `RESULT key=value ...` line; `bench/redis.sh` and `bench/sql.sh` run it for
//! every variant and scenario and make the tables. What it stored is removed before it exits.

use axum::body::Body;
use http::Request;
use sessionkit_bench::Scenario;
use sessionkit_bench::counting::{Counting, Counts};
use sessionkit_bench::proxy::Proxy;
use sessionkit_bench::statements;
use sessionkit_bench::stores::{
    CommandStats, StoreFixture, StoreVariant, database_url, pg_upstream, redis_upstream, redis_url,
};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: usize = 200;
const BATCH: usize = 500;

/// The measured requests. Never inlined, so callgrind can switch collection on exactly for
/// its duration (`--toggle-collect='*measured_loop*'`).
#[inline(never)]
fn measured_loop(
    runtime: &tokio::runtime::Runtime,
    fixture: &StoreFixture,
    requests: Vec<Request<Body>>,
) -> Duration {
    black_box(runtime.block_on(fixture.app.run(requests)))
}

/// Called right after [`measured_loop`], never inlined: with
/// `--dump-before='*measured_loop*' --dump-before='*measured_done*'` callgrind dumps the costs
/// of every thread between the two (part 2), for stacks that run work on threads of their own
/// (sqlx runs each SQLite connection on a worker thread), which `--toggle-collect` (per
/// thread) would miss.
#[inline(never)]
fn measured_done() {
    black_box(());
}

fn usage() -> ExitCode {
    let variants: Vec<_> = StoreVariant::ALL.iter().map(|v| v.name()).collect();
    eprintln!(
        "usage: stores <variant> <scenario> <n> [--sessions S] [--time-ms T] [--count]\n  variants:  {}\n  scenarios: no-cookie read write",
        variants.join(" ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return usage();
    }
    let (Some(variant), Some(scenario), Ok(n)) = (
        StoreVariant::parse(&args[0]),
        Scenario::parse(&args[1]),
        args[2].parse::<usize>(),
    ) else {
        return usage();
    };
    let mut sessions = 2000usize;
    let mut time_ms = 0u64;
    let mut count = false;
    let mut rest = args[3..].iter();
    while let Some(flag) = rest.next() {
        if flag == "--count" {
            count = true;
            continue;
        }
        let value = rest.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--sessions", Some(v)) if v > 0 => sessions = v as usize,
            ("--time-ms", Some(v)) => time_ms = v,
            _ => return usage(),
        }
    }
    if n == 0 {
        return usage();
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let upstream = match variant.store() {
        "postgres" => Some(pg_upstream(&database_url())),
        "redis" => Some(redis_upstream(&redis_url())),
        _ => None,
    };
    let proxy = if let Some(upstream) = upstream.filter(|_| count) {
        match upstream.and_then(|up| Proxy::start(up).map_err(|e| e.to_string())) {
            Ok(proxy) => Some(proxy),
            Err(e) => {
                eprintln!("cannot start the round-trip proxy: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    if count {
        statements::install();
    }
    let mut fixture = match runtime.block_on(StoreFixture::new(
        variant,
        scenario,
        sessions,
        WARMUP,
        proxy.as_ref(),
    )) {
        Ok(fixture) => fixture,
        Err(e) => {
            eprintln!("setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = redis_url();
    let redis = variant.store() == "redis";
    let requests = fixture.requests(n);

    let stats_before = redis.then(|| CommandStats::take(&url));
    let statements_before = statements::count();
    let trips_before = proxy.as_ref().map(Proxy::round_trips);
    let before = Counts::now();
    let elapsed = measured_loop(&runtime, &fixture, requests);
    measured_done();
    let counts = Counts::since(before);
    let trips = proxy
        .as_ref()
        .zip(trips_before)
        .map(|(proxy, before)| proxy.round_trips() - before);
    let statements = statements::count() - statements_before;
    let commands = match stats_before {
        None => None,
        Some(before) => match (before, CommandStats::take(&url)) {
            (Ok(before), Ok(after)) => Some(after.since(&before)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("no command counts: {e}");
                None
            }
        },
    };

    let mut batches = Vec::new();
    if time_ms > 0 {
        let deadline = Instant::now() + Duration::from_millis(time_ms);
        while Instant::now() < deadline || batches.len() < 5 {
            let requests = fixture.requests(BATCH);
            let took = runtime.block_on(fixture.app.run(requests));
            batches.push(took.as_nanos() as f64 / BATCH as f64);
        }
        batches.sort_by(f64::total_cmp);
    }

    // Inside the runtime's context: sqlx's pooled connections need it when they are dropped.
    let entered = runtime.enter();
    let cleaned = fixture.cleanup();
    drop(fixture);
    drop(entered);
    let cleaned = match cleaned {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cleanup failed: {e}");
            return ExitCode::FAILURE;
        }
    };

    let per = |count: u64| count as f64 / n as f64;
    let mut line = format!(
        "RESULT variant={variant} scenario={scenario} n={n} sessions={sessions} \
         allocs_per_req={:.2} reallocs_per_req={:.2} bytes_per_req={:.0} loop_ns_per_req={:.0}",
        per(counts.allocs),
        per(counts.reallocs),
        per(counts.bytes),
        elapsed.as_nanos() as f64 / n as f64,
    );
    if let Some(commands) = commands {
        let total: u64 = commands.values().sum();
        let list: Vec<String> = commands
            .iter()
            .map(|(name, &c)| format!("{}:{:.2}", name.to_uppercase(), per(c)))
            .collect();
        let list = if list.is_empty() {
            "-".to_owned()
        } else {
            list.join(",")
        };
        // INFO commandstats also counts what a server-side script runs (the save script's
        // GET and SET): round trips come from the relay (`--count`), when it ran.
        line += &format!(" cmds_per_req={list} cmds_total_per_req={:.2}", per(total));
    }
    if count {
        line += &format!(" statements_per_req={:.2}", per(statements));
    }
    if let Some(trips) = trips {
        line += &format!(" roundtrips_per_req={:.2}", per(trips));
    }
    if !batches.is_empty() {
        let median = batches[batches.len() / 2];
        line += &format!(
            " time_median_ns={median:.0} time_min_ns={:.0} time_batches={}",
            batches[0],
            batches.len()
        );
    }
    line += &format!(" cleaned={cleaned}");
    println!("{line}");
    ExitCode::SUCCESS
}
