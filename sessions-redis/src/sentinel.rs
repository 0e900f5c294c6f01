//! Following a Sentinel group's master: a task subscribed to every sentinel's
//! `+switch-master` channel counts the master's changes, and the shared connection, made
//! under an older count, is replaced before its next command.
//!
//! After a failover the old master, if it is still up, keeps accepting writes until the
//! sentinels turn it into a replica (about ten seconds after a `SENTINEL FAILOVER`); writes
//! sent to it in that time are lost. The sentinels announce the switch on `+switch-master`
//! as soon as the new master is chosen, so the backend leaves the old master then rather
//! than when it is demoted.

use deadpool_redis::redis::{self, ConnectionInfo, IntoConnectionInfo};
use futures_util::StreamExt;
use sessionkit_core::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// How long the watch waits before subscribing to a sentinel again when it cannot be reached
/// or its subscription ends.
const RETRY: Duration = Duration::from_millis(500);

/// How long a subscription may stay quiet before the sentinel is pinged (and, if it does not
/// answer within four [`RETRY`]s, left for a new subscription).
const QUIET: Duration = Duration::from_secs(5);

/// Where the sentinels are and which master they name: what the watch subscribes to.
#[derive(Clone)]
pub(crate) struct Sentinels {
    nodes: Vec<ConnectionInfo>,
    master: String,
}

impl Sentinels {
    /// The sentinels a deadpool-redis Sentinel `config` reaches, as its pool reaches them.
    pub(crate) fn of(config: &deadpool_redis::sentinel::Config) -> Result<Sentinels, Error> {
        let nodes = match (&config.urls, &config.connections) {
            (Some(urls), _) => urls
                .iter()
                .map(|url| url.as_str().into_connection_info())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Config(format!("redis: a sentinel URL is not valid: {e}")))?,
            (None, Some(connections)) => connections
                .iter()
                .map(|info| info.clone().into_connection_info())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    Error::Config(format!("redis: a sentinel address is not valid: {e}"))
                })?,
            // What deadpool-redis's pool connects to when given neither.
            (None, None) => vec![
                deadpool_redis::ConnectionInfo::default()
                    .into_connection_info()
                    .map_err(|e| Error::Config(format!("redis: no sentinel address: {e}")))?,
            ],
        };
        if nodes.is_empty() {
            return Err(Error::Config(
                "redis: Sentinel needs at least one sentinel address".into(),
            ));
        }
        Ok(Sentinels {
            nodes,
            master: config.master_name.clone(),
        })
    }
}

/// The count of master switches seen, kept up by a task started with the first command.
pub(crate) struct Watch {
    sentinels: Sentinels,
    switches: Arc<AtomicU64>,
    /// The task, on the tokio runtime of the operation that started it. A task whose runtime
    /// shut down (a backend kept across runtimes, as tests do) is started again on the
    /// current one.
    task: RwLock<Option<tokio::task::AbortHandle>>,
}

impl Watch {
    pub(crate) fn new(sentinels: Sentinels) -> Watch {
        Watch {
            sentinels,
            switches: Arc::default(),
            task: RwLock::new(None),
        }
    }

    pub(crate) fn sentinels(&self) -> &Sentinels {
        &self.sentinels
    }

    /// How many times the master has changed since the watch started (starting the watch on
    /// the current tokio runtime when it is not running).
    pub(crate) fn switches(&self) -> u64 {
        let running = self
            .task
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if !running {
            self.start();
        }
        self.switches.load(Ordering::Acquire)
    }

    fn start(&self) {
        let mut task = self.task.write().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_some_and(|task| !task.is_finished()) {
            return; // started meanwhile
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if task.is_some() {
            // Switches went unseen while no task ran: connect again through the sentinels.
            self.switches.fetch_add(1, Ordering::AcqRel);
        }
        let switches = Arc::clone(&self.switches);
        *task = Some(
            runtime
                .spawn(watch(self.sentinels.clone(), switches))
                .abort_handle(),
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// Subscribe to `+switch-master` on every sentinel at once, counting the switches of our
/// master. Each sentinel announces a switch when it learns of it, the leader first and the
/// others a moment later: listening to all of them, the backend also leaves a master that a
/// slower sentinel still named when the connection was made again. Duplicate announcements
/// cost a reconnect each, nothing more.
async fn watch(sentinels: Sentinels, switches: Arc<AtomicU64>) {
    let listeners = sentinels.nodes.iter().map(|node| {
        let switches = Arc::clone(&switches);
        listen(node, &sentinels.master, switches)
    });
    futures_util::future::join_all(listeners).await;
}

/// Listen to one sentinel for good: subscribe, count our master's switches, and when the
/// subscription ends (or the sentinel stops answering pings: a host cut off sends no reset),
/// subscribe again after a pause. A switch may go unseen while not subscribed: every new
/// subscription after the first counts as a switch, so the connection is made again
/// through the sentinels, once.
async fn listen(node: &ConnectionInfo, master: &str, switches: Arc<AtomicU64>) {
    let mut subscribed_before = false;
    loop {
        match subscribe(node).await {
            Ok(pubsub) => {
                if subscribed_before {
                    switches.fetch_add(1, Ordering::AcqRel);
                }
                subscribed_before = true;
                let (mut sink, mut messages) = pubsub.split();
                loop {
                    match tokio::time::timeout(QUIET, messages.next()).await {
                        Ok(Some(message)) => {
                            let Ok(payload) = message.get_payload::<String>() else {
                                continue;
                            };
                            // "<master name> <old ip> <old port> <new ip> <new port>"
                            if payload.split(' ').next() == Some(master) {
                                tracing::info!(switch = %payload, "redis: the Sentinel master changed; reconnecting");
                                switches.fetch_add(1, Ordering::AcqRel);
                            }
                        }
                        Ok(None) => break,
                        // Quiet for a while: is the sentinel still there?
                        Err(_) => {
                            match tokio::time::timeout(RETRY * 4, sink.ping::<redis::Value>()).await
                            {
                                Ok(Ok(_)) => {}
                                _ => break,
                            }
                        }
                    }
                }
                tracing::debug!(sentinel = %node.addr(), "redis: the sentinel subscription ended");
            }
            Err(e) => {
                tracing::debug!(sentinel = %node.addr(), error = %e, "redis: cannot subscribe to a sentinel");
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// A subscription to `+switch-master` on the sentinel at `node`, within [`RETRY`] times four.
async fn subscribe(node: &ConnectionInfo) -> Result<redis::aio::PubSub, String> {
    let attempt = async {
        let client = redis::Client::open(node.clone())?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe("+switch-master").await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(RETRY * 4, attempt).await {
        Ok(subscribed) => subscribed.map_err(|e| e.to_string()),
        Err(_) => Err("no answer".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_watch_outliving_its_runtime_starts_again_and_counts_a_switch() {
        // A sentinel address nothing answers on: the task keeps retrying, and no message
        // ever comes.
        let config = deadpool_redis::sentinel::Config::from_urls(
            vec!["redis://127.0.0.1:1".to_owned()],
            "m".to_owned(),
            deadpool_redis::sentinel::SentinelServerType::Master,
        );
        let watch = Watch::new(Sentinels::of(&config).unwrap());
        assert_eq!(watch.switches(), 0, "outside a runtime nothing starts");
        let first = runtime();
        assert_eq!(first.block_on(async { watch.switches() }), 0);
        assert_eq!(first.block_on(async { watch.switches() }), 0, "one task");
        drop(first);
        let second = runtime();
        assert_eq!(
            second.block_on(async { watch.switches() }),
            1,
            "switches may have gone unseen while no task ran"
        );
        assert_eq!(second.block_on(async { watch.switches() }), 1);
    }

    #[test]
    fn sentinel_addresses_come_from_urls_or_connections() {
        let bad = deadpool_redis::sentinel::Config::from_urls(
            vec!["not a url".to_owned()],
            "m".to_owned(),
            deadpool_redis::sentinel::SentinelServerType::Master,
        );
        assert!(matches!(Sentinels::of(&bad), Err(Error::Config(_))));
        let none = deadpool_redis::sentinel::Config::from_urls(
            Vec::<String>::new(),
            "m".to_owned(),
            deadpool_redis::sentinel::SentinelServerType::Master,
        );
        assert!(matches!(Sentinels::of(&none), Err(Error::Config(_))));
        let default = deadpool_redis::sentinel::Config::default();
        let sentinels = Sentinels::of(&default).unwrap();
        assert_eq!(sentinels.nodes.len(), 1);
        assert_eq!(sentinels.master, "mymaster");
    }
}
