//! A backend outliving its tokio runtime must drop without a panic.
#![cfg(feature = "sqlite")]

use sessionkit_core::{SessionBackend, SessionData};
use sessionkit_sql::SqliteBackend;

#[test]
fn backend_dropped_after_its_runtime_does_not_panic() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let backend = runtime.block_on(async {
        let backend = SqliteBackend::from_url("sqlite::memory:").expect("a SQLite URL");
        backend.migrate().await.expect("migrate");
        let id = backend
            .create(&SessionData::default(), None)
            .await
            .expect("write");
        assert!(backend.exists(&id).await.expect("exists"));
        backend
    });
    drop(runtime);
    drop(backend);
}
