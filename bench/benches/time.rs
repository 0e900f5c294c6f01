//! Wall-clock time per request for every variant and scenario (criterion).
//!
//! The same fixtures as the instruction counts (`src/bin/calls.rs`): requests are built before
//! the clock starts and sent one after another on a current-thread tokio runtime.
//!
//! `cargo bench --manifest-path bench/Cargo.toml --target-dir target --bench time -- [filter]`,
//! e.g. `-- ours/` or `-- /read`; ids are `requests/<variant>/<scenario>`.

use criterion::{Criterion, criterion_group, criterion_main};
use sessionkit_bench::{Fixture, Scenario, Variant};

fn requests(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("requests");
    for scenario in Scenario::ALL {
        for variant in Variant::ALL {
            let id = format!("{variant}/{scenario}");
            // Skip the setup of benchmarks the command line filtered out.
            let mut fixture = None;
            group.bench_function(id, |b| {
                let fixture = fixture
                    .get_or_insert_with(|| runtime.block_on(Fixture::new(variant, scenario)));
                b.iter_custom(|iters| {
                    let n = usize::try_from(iters).expect("iterations fit in usize");
                    let requests = fixture.requests(n);
                    // `run` times the sending loop alone.
                    runtime.block_on(fixture.app.run(requests))
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
