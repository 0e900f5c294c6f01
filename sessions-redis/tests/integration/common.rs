//! Real Redis servers for the tests: the shared one at `REDIS_URL`, and servers a test starts
//! on a port of its own (and stops at the end) when it needs one nobody else uses.

use deadpool_redis::redis;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REDIS_SERVER: &str = "redis-server";

/// The shared Redis other tests use too: never stop it, only use keys under your own prefix.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other run or test uses.
pub fn unique_prefix() -> String {
    format!("sessions-test:{}:", sessionkit_core::generate_id())
}

pub fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("cannot connect to the Redis at {url}: {e}"))
}

/// Delete every key under `prefix` on the node at `url`, one key per `DEL` (so it also works
/// on a cluster node, where a multi-key `DEL` must stay within one slot). Best effort: never
/// panics, returns how many keys went.
pub fn delete_prefix(url: &str, prefix: &str) -> usize {
    let Ok(mut conn) = redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
    else {
        return 0;
    };
    let mut deleted = 0;
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query::<(u64, Vec<Vec<u8>>)>(&mut conn)
        else {
            return deleted;
        };
        for key in keys {
            if redis::cmd("DEL").arg(key).query::<i64>(&mut conn).is_ok() {
                deleted += 1;
            }
        }
        if next == 0 {
            return deleted;
        }
        cursor = next;
    }
}

/// Deletes the keys under a prefix of the shared Redis when dropped, also when a test fails.
pub struct Cleanup {
    pub url: String,
    pub prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_prefix(&self.url, &self.prefix);
    }
}

/// How many times each command has run on the server: `INFO commandstats`.
pub fn command_calls(conn: &mut redis::Connection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A loopback port nothing listens on (a cluster node also needs `port + 10000` for its bus).
pub fn free_port(with_bus: bool) -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + (random_u64() % 20_000) as u16;
        if port_is_free(port) && (!with_bus || port_is_free(port + 10_000)) {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// A `redis-server` child process owned by one test, on its own port, killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// A new server on a free port.
    pub fn start(extra: &[&str]) -> RedisServer {
        for _ in 0..5 {
            if let Some(server) = RedisServer::try_start(free_port(false), extra) {
                return server;
            }
        }
        panic!("could not start {REDIS_SERVER}");
    }

    /// A new server on `port` (for a restart on the port of a stopped one).
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(server) = RedisServer::try_start(port, extra) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "could not start {REDIS_SERVER} on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_start(port: u16, extra: &[&str]) -> Option<RedisServer> {
        let dir = std::env::temp_dir().join(format!(
            "sessionkit-redis-test-{}-{port}-{:x}",
            std::process::id(),
            random_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(REDIS_SERVER)
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {REDIS_SERVER}: {e}"));
        let mut server = RedisServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                return None; // it exited: most likely the port was taken meanwhile
            }
            let ready = redis::Client::open(server.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ready.is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill the server and wait until it is gone.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` requests of one new session at once, spread over `layers` (app instances, each with
/// its backend), each through a locked route reading the count, pausing, and writing it plus
/// one, as the session layer runs them: what the count reads after.
#[cfg(any(feature = "cluster", feature = "sentinel"))]
pub async fn locked_increments(
    layers: &[std::sync::Arc<dyn sessionkit_core::adapter::Context>],
    n: usize,
) -> u64 {
    use sessionkit_core::adapter::{self, Commit};
    use std::sync::Arc;
    let first = adapter::session(Arc::clone(&layers[0]), None);
    first.load().await.unwrap().insert("n", 0).unwrap();
    let cookie: Arc<str> = match adapter::commit(&first).await.unwrap() {
        Commit::Set { value, .. } => value.into(),
        other => panic!("a new session's save must set a cookie, got {other:?}"),
    };
    let lockings: Vec<sessionkit_core::Locking> = layers
        .iter()
        .map(|_| sessionkit_core::Locking::new())
        .collect();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let layer = Arc::clone(&layers[i % layers.len()]);
            let locking = lockings[i % layers.len()].clone();
            let cookie = Arc::clone(&cookie);
            tokio::spawn(async move {
                let lazy = adapter::session(layer, Some(cookie));
                adapter::lock(&lazy, &locking).await.unwrap();
                let session = lazy.load().await.unwrap();
                let count: u64 = session.get("n").unwrap().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(2)).await;
                session.insert("n", count + 1).unwrap();
                adapter::commit(&lazy).await
            })
        })
        .collect();
    for task in tasks {
        let saved = task.await.expect("a request");
        assert!(
            matches!(saved, Ok(Commit::Set { .. })),
            "a locked save failed: {saved:?}"
        );
    }
    let reader = adapter::session(Arc::clone(&layers[0]), Some(cookie));
    reader.load().await.unwrap().get("n").unwrap().unwrap_or(0)
}
