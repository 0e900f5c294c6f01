//! The conformance suite against a real three-master Redis Cluster on loopback ports, started
//! by the test and stopped at its end. `REDIS_CLUSTER_URLS` (comma-separated node URLs) points
//! the test at an existing cluster instead; its keys are then deleted at the end.
//!
//! All cases run inside one test (`run_all`), so the cluster lives exactly as long as it.

use crate::common::{RedisServer, connect, delete_prefix, free_port, unique_prefix};
use deadpool_redis::redis;
use serde_json::json;
use sessionkit_core::adapter::{self, Commit, Context, Policy, Shared};
use sessionkit_core::conformance::{self, Harness};
use sessionkit_core::{IdGenerator, JsonSerializer, Serializer, SessionBackend, SessionData};
use sessionkit_redis::RedisBackend;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Commit a session as the layer does; the cookie it sets, if it sets one.
async fn saved(lazy: &sessionkit_core::LazySession) -> Option<String> {
    match adapter::commit(lazy).await.expect("a save") {
        Commit::Set { value, .. } => Some(value),
        _ => None,
    }
}

/// `n` requests of one session, each setting its own key at the same moment: every save
/// succeeds and every key is kept.
async fn burst_of_saves_keeps_every_key(layer: &Arc<dyn Context>, n: usize) {
    let lazy = adapter::session(Arc::clone(layer), None);
    lazy.load().await.unwrap().insert("first", true).unwrap();
    let cookie = saved(&lazy).await.expect("a new session's cookie");
    let saves: Vec<_> = (0..n)
        .map(|i| {
            let lazy = adapter::session(Arc::clone(layer), Some(cookie.as_str().into()));
            tokio::spawn(async move {
                lazy.load()
                    .await
                    .unwrap()
                    .insert(&format!("k{i}"), i)
                    .unwrap();
                adapter::commit(&lazy).await
            })
        })
        .collect();
    for save in saves {
        let commit = save.await.expect("a save task");
        assert!(
            matches!(commit, Ok(Commit::Set { .. })),
            "a save of the burst failed: {commit:?}"
        );
    }
    let lazy = adapter::session(Arc::clone(layer), Some(cookie.as_str().into()));
    assert_eq!(
        lazy.load().await.unwrap().keys().len(),
        n + 1,
        "keys lost in the burst"
    );
}

/// Device D's session moves to a new id again and again (four requests at a time) while
/// device B signs out the other devices: how many of `runs` runs D kept a session.
async fn revocation_catches_moving_sessions(layer: &Arc<dyn Context>, runs: usize) -> usize {
    let login = |user: String| {
        let lazy = adapter::session(Arc::clone(layer), None);
        async move {
            let session = lazy.load().await.unwrap();
            session.set_user(user).unwrap();
            saved(&lazy).await.expect("a login's cookie")
        }
    };
    let mut escapes = 0;
    for run in 0..runs {
        let user = format!("mover-{run}-{}", sessionkit_core::generate_id());
        let d = Arc::new(std::sync::Mutex::new(login(user.clone()).await));
        let b = login(user.clone()).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let movers: Vec<_> = (0..4)
            .map(|_| {
                let (layer, d, stop) = (Arc::clone(layer), Arc::clone(&d), Arc::clone(&stop));
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let cookie = d.lock().unwrap().clone();
                        let lazy = adapter::session(Arc::clone(&layer), Some(cookie.into()));
                        lazy.load().await.unwrap().regenerate_id().unwrap();
                        if let Some(moved) = saved(&lazy).await {
                            *d.lock().unwrap() = moved;
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let revoking = adapter::session(Arc::clone(layer), Some(b.as_str().into()));
        revoking
            .load()
            .await
            .unwrap()
            .revoke_other_sessions()
            .await
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for mover in movers {
            mover.await.unwrap();
        }
        let last = d.lock().unwrap().clone();
        let d_now = adapter::session(Arc::clone(layer), Some(last.into()));
        let left = revoking
            .load()
            .await
            .unwrap()
            .user_sessions()
            .await
            .unwrap()
            .len();
        if d_now.load().await.unwrap().user().is_some() || left != 1 {
            escapes += 1;
        }
    }
    escapes
}

struct ClusterHarness<S> {
    urls: Vec<String>,
    prefix: String,
    serializer: S,
}

impl<S: Serializer + Clone> Harness for ClusterHarness<S> {
    type Backend = RedisBackend<S>;

    async fn backend(&self) -> RedisBackend<S> {
        RedisBackend::from_cluster_urls(self.urls.iter().cloned())
            .expect("valid cluster URLs")
            .with_prefix(self.prefix.as_str())
            .with_serializer(self.serializer.clone())
    }

    async fn backend_with_ids(&self, ids: IdGenerator) -> Option<RedisBackend<S>> {
        Some(self.backend().await.with_id_generator(ids))
    }
}

/// The cluster under test: started here (and stopped when dropped), or given.
struct Cluster {
    urls: Vec<String>,
    _nodes: Vec<RedisServer>,
}

impl Cluster {
    fn from_env_or_start() -> Cluster {
        match std::env::var("REDIS_CLUSTER_URLS") {
            Ok(urls) if !urls.trim().is_empty() => Cluster {
                urls: urls.split(',').map(|url| url.trim().to_owned()).collect(),
                _nodes: Vec::new(),
            },
            _ => Cluster::start(),
        }
    }

    fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let port = free_port(true);
                // Relative to the server's own temporary `--dir`, removed with it.
                let conf = format!("nodes-{port}.conf");
                RedisServer::start_on(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--cluster-node-timeout",
                        "5000",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("cannot run redis-cli");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in &urls {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut connect(url))
                    .unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster never got ready: {info}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Cluster {
            urls,
            _nodes: nodes,
        }
    }

    /// The URLs of the cluster's masters, as `CLUSTER NODES` lists them (none if it cannot
    /// be asked: this also runs from a destructor, where it must not panic).
    fn master_urls(&self) -> Vec<String> {
        let nodes: String = match redis::Client::open(self.urls[0].as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut conn| redis::cmd("CLUSTER").arg("NODES").query(&mut conn))
        {
            Ok(nodes) => nodes,
            Err(_) => return Vec::new(),
        };
        nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = fields.get(2)?;
                if !flags.split(',').any(|flag| flag == "master") {
                    return None;
                }
                let addr = fields.get(1)?.split('@').next()?;
                Some(format!("redis://{addr}"))
            })
            .collect()
    }

    fn delete_prefix(&self, prefix: &str) -> usize {
        self.master_urls()
            .iter()
            .map(|url| delete_prefix(url, prefix))
            .sum()
    }
}

/// Deletes the test's keys from every master when dropped, also when a case fails (it matters
/// for a cluster given by `REDIS_CLUSTER_URLS`; one started here goes away whole).
struct ClusterCleanup<'a> {
    cluster: &'a Cluster,
    prefix: &'a str,
}

impl Drop for ClusterCleanup<'_> {
    fn drop(&mut self) {
        self.cluster.delete_prefix(self.prefix);
    }
}

#[test]
fn cluster_conformance_and_keys_across_slots() {
    let cluster = Cluster::from_env_or_start();
    let prefix = unique_prefix();
    let _cleanup = ClusterCleanup {
        cluster: &cluster,
        prefix: &prefix,
    };
    conformance::block_on(async {
        let json = ClusterHarness {
            urls: cluster.urls.clone(),
            prefix: prefix.clone(),
            serializer: JsonSerializer,
        };
        // The cluster harness cannot plant raw bytes; the single-node suite runs those cases.
        let skip = [
            conformance::Case::CorruptRecordReadsAsMissing,
            conformance::Case::CorruptRecordFailsWhenStrict,
        ];
        conformance::run_all(&json, &skip).await;

        // The cases on Redis's own expiry wait in real time and do not depend on the record
        // format: the JSON run covers them.
        #[cfg(feature = "bincode")]
        conformance::run_all(
            &ClusterHarness {
                urls: cluster.urls.clone(),
                prefix: prefix.clone(),
                serializer: sessionkit_core::BincodeSerializer,
            },
            &[
                skip.as_slice(),
                &[
                    conformance::Case::TtlHonoured,
                    conformance::Case::TtlResetsOnWrite,
                    conformance::Case::UserExpiredSessionsPruned,
                ],
            ]
            .concat(),
        )
        .await;

        // Sessions spread over the slots of every master, each reachable through the backend.
        let backend = json.backend().await;
        let mut ids = Vec::new();
        for n in 0..60 {
            let mut data = SessionData::default();
            data.values_mut().insert("n".into(), json!(n));
            ids.push(backend.create(&data, None).await.unwrap());
        }
        for (n, id) in ids.iter().enumerate() {
            let data = backend.read(id).await.unwrap().unwrap();
            assert_eq!(data.values()["n"], json!(n));
        }

        // "Log out everywhere" through the handler API: twelve devices of one user, their
        // sessions on every master, the user's index in one slot; one device ends the others.
        let layer: Arc<dyn Context> = Arc::new(Shared {
            backend: json.backend().await,
            policy: Policy::default(),
        });
        let mut cookies = Vec::new();
        for device in 0..12 {
            let lazy = adapter::session(Arc::clone(&layer), None);
            let session = lazy.load().await.unwrap();
            session.set_user("ada").unwrap();
            session.insert("device", device).unwrap();
            match adapter::commit(&lazy).await.unwrap() {
                Commit::Set { value, .. } => cookies.push(value),
                other => panic!("a login must set a cookie, got {other:?}"),
            }
        }
        let open = |cookie: &String| {
            let lazy = adapter::session(Arc::clone(&layer), Some(cookie.as_str().into()));
            async move { lazy.load().await.unwrap() }
        };
        let first = open(&cookies[0]).await;
        let devices = first.user_sessions().await.unwrap();
        assert_eq!(devices.len(), 12);
        assert_eq!(devices.iter().filter(|d| d.current).count(), 1);
        assert_eq!(first.revoke_other_sessions().await.unwrap(), 11);
        for cookie in &cookies[1..] {
            assert_eq!(open(cookie).await.user(), None, "a device kept its session");
        }
        assert_eq!(open(&cookies[0]).await.user().as_deref(), Some("ada"));
        assert_eq!(first.user_sessions().await.unwrap().len(), 1);

        burst_of_saves_keeps_every_key(&layer, 64).await;

        // A locked route on two app instances (backends of their own): the session's lock
        // key shares its slot, and 32 read-modify-writes of one key lose nothing.
        let second: Arc<dyn Context> = Arc::new(Shared {
            backend: json.backend().await,
            policy: Policy::default(),
        });
        assert_eq!(
            crate::common::locked_increments(&[Arc::clone(&layer), second], 32).await,
            32,
            "locked increments lost updates on the cluster"
        );
        let escapes = revocation_catches_moving_sessions(&layer, 50).await;
        println!("cluster: a session moving during a revocation escaped {escapes} of 50 runs");
        assert_eq!(escapes, 0, "moving sessions escaped the revocation");
    });

    let masters = cluster.master_urls();
    assert!(masters.len() >= 3, "expected three masters: {masters:?}");
    let holding = masters
        .iter()
        .filter(|url| {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut connect(url))
                .unwrap();
            !keys.is_empty()
        })
        .count();
    assert_eq!(
        holding,
        masters.len(),
        "sessions did not spread over every master"
    );
    assert!(cluster.delete_prefix(&prefix) >= 60);
}
