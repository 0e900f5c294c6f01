//! The backend through Redis Sentinel, on a topology of the test's own on loopback ports: one
//! master, one replica and three sentinels (`redis-server`, and `redis-server --sentinel`:
//! the `redis-sentinel` command of Debian's package is the same program), started by the test
//! and stopped at its end.
//!
//! One test (`sentinel_conformance_and_failover`) runs the conformance suite through the
//! sentinels, then forces a failover (`SENTINEL FAILOVER`) while a client keeps sending
//! requests through the session layer, and checks what a user sees before, during and after.

use crate::common::{RedisServer, command_calls, connect, free_port, unique_prefix};
use crate::conformance::RedisHarness;
use axum::Router;
use axum::routing::get;
use deadpool_redis::redis;
use serde_json::json;
use sessionkit_core::adapter::{Context, Policy, Shared};
use sessionkit_core::conformance::{self, Harness};
use sessionkit_core::{JsonSerializer, SessionBackend, SessionData};
use sessionkit_redis::RedisBackend;
use sessionkit_tower::testing::TestClient;
use sessionkit_tower::{Error, Session, SessionLayer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MASTER: &str = "sessionkit";

/// A `redis-server --sentinel` child process, killed when dropped.
struct SentinelProcess {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl SentinelProcess {
    fn start(master_port: u16) -> SentinelProcess {
        for _ in 0..5 {
            let port = free_port(false);
            let dir = std::env::temp_dir().join(format!(
                "sessionkit-sentinel-test-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            // Sentinel rewrites its configuration file: it must be a file of its own.
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n",
                    dir.display()
                ),
            )
            .unwrap();
            let child = Command::new(crate::common::REDIS_SERVER)
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot run redis-server --sentinel");
            let mut sentinel = SentinelProcess { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = sentinel.child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                let ready = redis::Client::open(sentinel.url())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
                if ready.is_ok() {
                    return sentinel;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("could not start a sentinel");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One master, one replica, three sentinels watching them (quorum 2).
struct Topology {
    nodes: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

fn info_field(url: &str, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut connect(url))
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.trim().to_owned())
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Topology {
    fn start() -> Topology {
        let master = RedisServer::start(&[]);
        let master_port = master.port().to_string();
        let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &master_port]);
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(master.port()))
            .collect();
        let topology = Topology {
            nodes: vec![master, replica],
            sentinels,
        };
        topology.wait_healthy();
        topology
    }

    fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(SentinelProcess::url).collect()
    }

    /// The master's URL as the sentinel `s` names it.
    fn master_url_by(&self, s: usize) -> Option<String> {
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query(&mut connect(&self.sentinels[s].url()))
            .ok()?;
        addr.map(|(host, port)| format!("redis://{host}:{port}"))
    }

    fn master_url(&self) -> String {
        self.master_url_by(0).expect("the sentinels name a master")
    }

    fn replica_url(&self) -> String {
        let master = self.master_url();
        self.nodes
            .iter()
            .map(RedisServer::url)
            .find(|url| *url != master)
            .expect("a node that is not the master")
    }

    /// Every sentinel agrees on the master, sees the other two and the replica, and the
    /// replica is linked to the master.
    fn wait_healthy(&self) {
        let master = self.master_url();
        wait_until(
            "a healthy Sentinel topology",
            Duration::from_secs(60),
            || {
                let sentinels_agree = (0..self.sentinels.len()).all(|s| {
                    let url = self.sentinels[s].url();
                    let quorum: Result<String, _> = redis::cmd("SENTINEL")
                        .arg("CKQUORUM")
                        .arg(MASTER)
                        .query(&mut connect(&url));
                    let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
                        .arg("REPLICAS")
                        .arg(MASTER)
                        .query(&mut connect(&url))
                        .unwrap_or_default();
                    self.master_url_by(s).as_ref() == Some(&master)
                        && quorum.is_ok_and(|q| q.contains("3 usable"))
                        && replicas.iter().any(|r| {
                            r.get("flags").map(String::as_str) == Some("slave")
                                && r.get("master-link-status").map(String::as_str) == Some("ok")
                        })
                });
                sentinels_agree
                    && info_field(&self.replica_url(), "replication", "master_link_status")
                        .as_deref()
                        == Some("up")
            },
        );
    }

    /// Wait until the replica holds every write the master took so far.
    fn wait_replicated(&self) {
        let master = self.master_url();
        let replica = self.replica_url();
        let offset = |url: &str, field: &str| -> u64 {
            info_field(url, "replication", field)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let written = offset(&master, "master_repl_offset");
        wait_until("the replica catching up", Duration::from_secs(10), || {
            offset(&replica, "slave_repl_offset") >= written
        });
    }
}

async fn login(session: Session) -> Result<&'static str, Error> {
    session.regenerate_id()?;
    session.set_user("ada")?;
    Ok("welcome")
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.delete().await?;
    Ok("bye")
}

async fn increment(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn whoami(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0);
    let user = session.user().unwrap_or_else(|| "anonymous".into());
    let devices = match session.user() {
        Some(_) => session.user_sessions().await?.len(),
        None => 0,
    };
    Ok(format!("{user} {n} {devices}"))
}

fn app(backend: RedisBackend) -> Router {
    Router::new()
        .route("/login", get(login))
        .route("/logout", get(logout))
        .route("/inc", get(increment))
        .route("/", get(whoami))
        .layer(SessionLayer::new(backend))
}

/// One request of the client that keeps going through a failover.
struct Attempt {
    at: Duration,
    ok: bool,
}

/// What a client that sent `GET /inc` every 20 ms saw while `switch` ran (it returns once
/// every sentinel names the new master) and for 3 s after it.
struct Traffic {
    attempts: Vec<Attempt>,
    switched_at: Duration,
    /// The last count the client was answered before it stopped.
    counted: u64,
    client: TestClient,
}

impl Traffic {
    fn through(
        runtime: &tokio::runtime::Runtime,
        client: TestClient,
        switch: impl FnOnce(),
    ) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let task = runtime.spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut attempts = Vec::new();
                let mut counted = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let answer = client.get("/inc").await;
                    let ok = answer.status == 200;
                    if ok {
                        counted = answer.body.parse().expect("a count");
                    } else {
                        assert_eq!(answer.status, 500, "a failure during the switch");
                        assert_eq!(answer.body, "", "a failure's answer is empty");
                    }
                    attempts.push(Attempt {
                        at: started.elapsed(),
                        ok,
                    });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (attempts, counted, client)
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        switch();
        let switched_at = started.elapsed();
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        let (attempts, counted, client) = runtime.block_on(task).expect("the traffic task");
        Traffic {
            attempts,
            switched_at,
            counted,
            client,
        }
    }

    /// Print what the client saw, and check that its last 20 requests (all after the switch)
    /// succeeded; the span from the first to the last failed request.
    fn report(&self, what: &str) -> Duration {
        let failed: Vec<&Attempt> = self.attempts.iter().filter(|a| !a.ok).collect();
        let span = match (failed.first(), failed.last()) {
            (Some(first), Some(last)) => last.at - first.at,
            _ => Duration::ZERO,
        };
        println!(
            "sentinel {what}: the sentinels switched {:?} after it began; {} of {} requests \
             failed, over {span:?}",
            self.switched_at.saturating_sub(Duration::from_millis(500)),
            failed.len(),
            self.attempts.len(),
        );
        let last: Vec<&Attempt> = self.attempts.iter().rev().take(20).collect();
        assert!(
            last.len() == 20 && last.iter().all(|a| a.ok && a.at > self.switched_at),
            "{what}: requests still failed 3 s after the sentinels switched"
        );
        span
    }
}

fn wait_for_master(topology: &Topology, url: &str) {
    wait_until(
        "every sentinel naming the new master",
        Duration::from_secs(30),
        || (0..3).all(|s| topology.master_url_by(s).as_deref() == Some(url)),
    );
}

#[test]
fn sentinel_conformance_and_failover() {
    let mut topology = Topology::start();
    let prefix = unique_prefix();
    let harness = RedisHarness::new(
        {
            let urls = topology.sentinel_urls();
            move || {
                RedisBackend::from_sentinel(urls.iter().cloned(), MASTER)
                    .expect("valid sentinel URLs")
            }
        },
        topology.master_url(),
        JsonSerializer,
    );
    conformance::block_on(async {
        conformance::run_all(&harness, &[]).await;
        // A locked route through Sentinel, on two app instances: its lock keys go to the
        // master like the rest.
        let layers: Vec<Arc<dyn Context>> = vec![
            Arc::new(Shared {
                backend: harness.backend().await,
                policy: Policy::default(),
            }),
            Arc::new(Shared {
                backend: harness.backend().await,
                policy: Policy::default(),
            }),
        ];
        assert_eq!(
            crate::common::locked_increments(&layers, 32).await,
            32,
            "locked increments lost updates through Sentinel"
        );
    });

    let old_master = topology.master_url();
    let old_replica = topology.replica_url();
    let sentinel_urls = topology.sentinel_urls();
    let backend = || {
        RedisBackend::from_sentinel(sentinel_urls.iter().cloned(), MASTER)
            .expect("valid sentinel URLs")
            .with_prefix(prefix.as_str())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = app(backend());

    // A backend whose watch reaches no sentinel (its pool does): it can only learn of a
    // failover from what the old master answers.
    let config = deadpool_redis::sentinel::Config::from_urls(
        sentinel_urls.clone(),
        MASTER.to_owned(),
        deadpool_redis::sentinel::SentinelServerType::Master,
    );
    let pool = config
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let nowhere = deadpool_redis::sentinel::Config::from_urls(
        vec![format!("redis://127.0.0.1:{}", free_port(false))],
        MASTER.to_owned(),
        deadpool_redis::sentinel::SentinelServerType::Master,
    );
    let replicas = deadpool_redis::sentinel::Config::from_urls(
        sentinel_urls.clone(),
        MASTER.to_owned(),
        deadpool_redis::sentinel::SentinelServerType::Replica,
    );
    assert!(matches!(
        RedisBackend::from_sentinel_pool(pool.clone(), &replicas),
        Err(sessionkit_core::Error::Config(_))
    ));
    let blind = RedisBackend::from_sentinel_pool(pool, &nowhere)
        .unwrap()
        .with_prefix(prefix.as_str());

    // Before the failover: Ada counts to 5 on one device; a second device of hers logs in and
    // out; sixty sessions are written straight through the backend.
    let ada = TestClient::new(app.clone());
    let gone = TestClient::new(app.clone());
    let direct = backend();
    // Backends on pools of the application's: one of a single connection (the backend's
    // own, replaced after the switch), and one the application also draws from, which holds
    // an idle connection to the old master when the switch comes.
    let sized = |size: usize| {
        let mut config = config.clone();
        config.pool = Some(deadpool_redis::PoolConfig::new(size));
        let pool = config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .unwrap();
        let backend = RedisBackend::from_sentinel_pool(pool.clone(), &config)
            .unwrap()
            .with_prefix(prefix.as_str());
        (pool, backend)
    };
    let (_, single) = sized(1);
    let (shared_pool, shared) = sized(2);
    let ids: Vec<String> = runtime.block_on(async {
        assert_eq!(ada.get("/login").await.body, "welcome");
        for _ in 0..5 {
            ada.get("/inc").await;
        }
        assert_eq!(gone.get("/login").await.body, "welcome");
        assert_eq!(ada.get("/").await.body, "ada 5 2");
        let old_cookie = gone.cookie("session").expect("a login cookie");
        assert_eq!(gone.get("/logout").await.body, "bye");
        gone.set_cookie("session", Some(&old_cookie)); // a copy kept from before the logout
        let mut ids = Vec::new();
        for n in 0..60 {
            let mut data = SessionData::default();
            data.values_mut().insert("n".into(), json!(n));
            ids.push(direct.create(&data, None).await.unwrap());
        }
        blind.create(&SessionData::default(), None).await.unwrap();
        single.create(&SessionData::default(), None).await.unwrap();
        shared.create(&SessionData::default(), None).await.unwrap();
        // The application's own use of the shared pool leaves a connection idle in it.
        drop(
            shared_pool
                .get()
                .await
                .expect("a connection of the shared pool"),
        );
        ids
    });
    topology.wait_replicated();

    // A forced failover, the old master staying up, while a client increments its counter.
    let forced = Traffic::through(&runtime, TestClient::new(app.clone()), || {
        let reply: String = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER)
            .query(&mut connect(&topology.sentinels[0].url()))
            .expect("SENTINEL FAILOVER");
        assert_eq!(reply, "OK");
        wait_for_master(&topology, &old_replica);
    });
    forced.report("SENTINEL FAILOVER");

    runtime.block_on(async {
        // The new master holds the writes replicated before the switch.
        assert_eq!(
            ada.get("/").await.body,
            "ada 5 1",
            "Ada's count or device list after the failover"
        );
        assert_eq!(
            gone.get("/").await.body,
            "anonymous 0 0",
            "a logout done before the failover came undone"
        );
        for (n, id) in ids.iter().enumerate() {
            let data = direct
                .read(id)
                .await
                .unwrap()
                .expect("a session written before");
            assert_eq!(data.values()["n"], json!(n));
        }
        // Writes go to the new master, through the same backends, without a restart: at
        // once, not when the old master is turned into a replica (some seconds later). A
        // master that does not know the save's script (flushed here, as on a master that
        // never ran it) answers NOSCRIPT, and the script is loaded again.
        let mut new_master = connect(&old_replica);
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut new_master)
            .unwrap();
        let loads = |conn: &mut redis::Connection| {
            command_calls(conn).get("script|load").copied().unwrap_or(0)
        };
        let loads_before = loads(&mut new_master);
        assert_eq!(ada.get("/inc").await.body, "6");
        assert!(
            loads(&mut new_master) > loads_before,
            "the save did not load its script on the new master"
        );
        for (what, backend) in [
            ("own pool", &direct),
            ("pool of one", &single),
            ("shared pool", &shared),
        ] {
            let fresh = backend.create(&SessionData::default(), None).await;
            let fresh = fresh.unwrap_or_else(|e| panic!("{what}: a create after the switch: {e}"));
            let on_new_master: bool = redis::cmd("EXISTS")
                .arg(backend.key(&fresh))
                .query(&mut connect(&old_replica))
                .unwrap();
            assert!(
                on_new_master,
                "{what}: a session created after the switch is not on the new master"
            );
        }
        let after: u64 = forced.client.get("/inc").await.body.parse().unwrap();
        println!(
            "sentinel SENTINEL FAILOVER: the client's counter read {} at the end, {after} at \
             its next request (a difference beyond 1 is increments lost in the switch)",
            forced.counted
        );

        // The old master turns replica (as the sentinels will make it, but without closing
        // its clients): the blind backend's next write is refused (READONLY), and it
        // reconnects through the sentinels to the new master.
        let (host, port) = old_replica
            .trim_start_matches("redis://")
            .split_once(':')
            .unwrap();
        let _: () = redis::cmd("REPLICAOF")
            .arg(host)
            .arg(port)
            .query(&mut connect(&old_master))
            .unwrap();
        let moved = blind.create(&SessionData::default(), None).await.unwrap();
        let on_new_master: bool = redis::cmd("EXISTS")
            .arg(blind.key(&moved))
            .query(&mut connect(&old_replica))
            .unwrap();
        assert!(
            on_new_master,
            "the write refused by the old master was not sent to the new one"
        );
    });
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut connect(&old_replica))
        .unwrap();
    assert!(keys.len() > 60, "the new master holds the sessions");

    // The master crashes: the sentinels find it down after a second, then elect the replica.
    topology.wait_healthy();
    topology.wait_replicated();
    let crashed = Traffic::through(&runtime, TestClient::new(app.clone()), || {
        let index = topology
            .nodes
            .iter()
            .position(|node| node.url() == old_replica)
            .unwrap();
        topology.nodes.remove(index).stop();
        wait_for_master(&topology, &old_master);
    });
    let span = crashed.report("master crash");
    assert!(
        span < Duration::from_secs(30),
        "requests failed for {span:?}"
    );
    runtime.block_on(async {
        assert_eq!(
            ada.get("/").await.body,
            "ada 6 1",
            "Ada's session after the crash"
        );
    });
}
