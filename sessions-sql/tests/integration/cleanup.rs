//! `delete_expired` and the periodic cleanup task, on every database: exactly the expired rows
//! go, in batches; the task stops on request and when dropped; two instances cleaning the same
//! table at once neither fail nor deadlock.

use crate::common::{Fixture, HOUR, Kind, for_each_db, n};
use sessionkit_core::{Error, SessionBackend};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

for_each_db!(
    delete_expired_removes_exactly_the_expired_rows,
    the_periodic_task_cleans_and_stops_on_request,
    dropping_the_handle_stops_the_task,
    two_instances_cleaning_at_once_neither_fail_nor_deadlock,
);

async fn delete_expired_removes_exactly_the_expired_rows<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    // Batches of 7: 30 expired rows take 5 statements, the last one partial.
    let b = fx.variant().with_cleanup_batch_size(7).build().unwrap();
    let mut live = Vec::new();
    for i in 0..10 {
        live.push(b.create(&n(i), HOUR).await.unwrap());
    }
    for i in 0..3 {
        live.push(b.create(&n(i), None).await.unwrap());
    }
    let mut expired = Vec::new();
    for i in 0..5 {
        let id = b.create(&n(i), HOUR).await.unwrap();
        fx.expire_now(&id).await;
        expired.push(id);
    }
    fx.insert_expired(25).await;
    assert_eq!(fx.rows().await, 43);

    assert_eq!(b.delete_expired().await.unwrap(), 30);
    assert_eq!(fx.rows().await, 13);
    assert_eq!(fx.expired_rows().await, 0);
    for id in &live {
        assert!(b.exists(id).await.unwrap(), "a live session was deleted");
    }
    for id in &expired {
        assert!(!b.exists(id).await.unwrap());
    }
    assert_eq!(b.delete_expired().await.unwrap(), 0);

    // Exactly a multiple of the batch size: the loop still ends.
    fx.insert_expired(14).await;
    assert_eq!(b.delete_expired().await.unwrap(), 14);
    assert_eq!(fx.rows().await, 13);
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_periodic_task_cleans_and_stops_on_request<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let keep = fx.backend.create(&n(1), HOUR).await.unwrap();
    fx.insert_expired(40).await;
    let task = fx
        .variant()
        .with_cleanup_batch_size(16)
        .build()
        .unwrap()
        .spawn_cleanup(Duration::from_millis(50))
        .unwrap();
    wait_for("the first run", async || fx.expired_rows().await == 0).await;

    // Later runs pick up rows that expire later.
    fx.insert_expired(10).await;
    wait_for("a later run", async || fx.expired_rows().await == 0).await;
    assert!(!task.is_finished());

    let started = Instant::now();
    assert_eq!(task.stop().await, 50, "the task reports what it deleted");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Stopped: nothing is deleted any more.
    fx.insert_expired(5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fx.expired_rows().await, 5);
    assert!(fx.backend.exists(&keep).await.unwrap());

    assert!(matches!(
        fx.backend.spawn_cleanup(Duration::ZERO),
        Err(Error::Config(_))
    ));
}

async fn dropping_the_handle_stops_the_task<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let task = fx.backend.spawn_cleanup(Duration::from_millis(50)).unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    drop(task);
    tokio::time::sleep(Duration::from_millis(100)).await;
    fx.insert_expired(5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fx.expired_rows().await,
        5,
        "a dropped task still deleted rows"
    );
}

async fn two_instances_cleaning_at_once_neither_fail_nor_deadlock<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    const EXPIRED: i64 = 3000;
    fx.insert_expired(EXPIRED as usize).await;
    let mut live = Vec::new();
    for i in 0..20 {
        live.push(fx.backend.create(&n(i), HOUR).await.unwrap());
    }

    // Meanwhile the application keeps using sessions: updates and creates on the same table.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let b = fx.backend.clone();
        let stop = Arc::clone(&stop);
        let live = live.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = &live[(i % live.len() as u64) as usize];
                b.update(id, &n(i), HOUR).await.expect("an update failed");
                b.create(&n(i), HOUR).await.expect("a create failed");
                i += 1;
            }
            i
        })
    };

    // Two instances (pools of their own), each looping its cleanup in small batches.
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let b = fx
                .another_instance_builder()
                .with_cleanup_batch_size(100)
                .build()
                .unwrap();
            tokio::spawn(async move {
                let mut total = 0u64;
                let mut runs = 0;
                loop {
                    runs += 1;
                    let deleted = b.delete_expired().await.expect("a cleanup run failed");
                    total += deleted;
                    if deleted == 0 && runs > 3 {
                        return total;
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for cleaner in cleaners {
        total += tokio::time::timeout(Duration::from_secs(60), cleaner)
            .await
            .expect("the cleaners deadlocked")
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 0);

    assert_eq!(
        total, EXPIRED as u64,
        "each expired row was deleted exactly once"
    );
    assert_eq!(fx.expired_rows().await, 0);
    assert_eq!(fx.rows().await, 20 + writes as i64);
    for id in &live {
        assert!(fx.backend.exists(id).await.unwrap());
    }

    // The same with the periodic tasks of two instances.
    fx.insert_expired(1000).await;
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            fx.another_instance_builder()
                .with_cleanup_batch_size(50)
                .build()
                .unwrap()
                .spawn_cleanup(Duration::from_millis(10))
                .unwrap()
        })
        .collect();
    wait_for("the two tasks", async || fx.expired_rows().await == 0).await;
    let mut total = 0;
    for task in tasks {
        total += task.stop().await;
    }
    assert_eq!(total, 1000);
}
