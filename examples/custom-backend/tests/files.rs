//! What the file format adds to the suite: expired records are purged, and only records
//! (no lock or temporary files) count as sessions.

use custom_backend::FileBackend;
use serde_json::json;
use sessionkit_core::{SessionBackend, SessionData};
use std::path::PathBuf;
use std::time::Duration;

fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("custom-backend")
        .join(sessionkit_core::generate_id())
}

fn record(n: u64) -> SessionData {
    let mut data = SessionData::default();
    data.values_mut().insert("n".into(), json!(n));
    data
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn purge_deletes_expired_records_only() {
    let dir = scratch();
    runtime().block_on(async {
        let backend = FileBackend::new(&dir).unwrap();
        let short = backend
            .create(&record(1), Some(Duration::from_millis(1)))
            .await
            .unwrap();
        let long = backend
            .create(&record(2), Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        let forever = backend.create(&record(3), None).await.unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(backend.purge_expired().await.unwrap(), 1);
        assert!(!dir.join(format!("{short}.session")).exists());
        assert!(backend.exists(&long).await.unwrap());
        assert!(backend.exists(&forever).await.unwrap());
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn records_start_with_their_deadline_then_plain_json() {
    let dir = scratch();
    runtime().block_on(async {
        let backend = FileBackend::new(&dir).unwrap();
        let id = backend.create(&record(7), None).await.unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{id}.session"))).unwrap();
        let (header, body) = text.split_once('\n').unwrap();
        assert_eq!(header, "sessions-file v1 never");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap()["data"],
            json!({"n": 7})
        );
        // An update replaces the file through a rename: no temporary file is left.
        backend.update(&id, &record(8), None).await.unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        // Sorted the same way: an id may start with `-`, which sorts before `.`.
        let mut expected = [".lock".to_owned(), format!("{id}.session")];
        expected.sort();
        assert_eq!(names, expected);
        assert!(!backend.exists(".lock").await.unwrap());
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
