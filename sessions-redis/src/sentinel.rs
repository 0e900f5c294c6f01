//! Following a Sentinel group's master: a task subscribed to the sentinels' `+switch-master`
//! channel counts the master's changes, and the shared connection, made under an older
//! count, is replaced before its next command.
//!
//! After a failover the old master, if it is still up, keeps accepting writes until the
//! sentinels turn it into a replica (about ten seconds after a `SENTINEL FAILOVER`); writes
//! sent to it in that time are lost. The sentinels announce the switch on `+switch-master`
//! as soon as the new master is chosen, so the backend leaves the old master then rather
//! than when it is demoted.

use deadpool_redis::redis::{self, ConnectionInfo, IntoConnectionInfo};
use futures_util::StreamExt;
use sessionkit_core::Error;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long the watch waits before trying the next sentinel when one cannot be reached or
/// its subscription ends.
const RETRY: Duration = Duration::from_millis(500);

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
    task: OnceLock<tokio::task::AbortHandle>,
}

impl Watch {
    pub(crate) fn new(sentinels: Sentinels) -> Watch {
        Watch {
            sentinels,
            switches: Arc::default(),
            task: OnceLock::new(),
        }
    }

    pub(crate) fn sentinels(&self) -> &Sentinels {
        &self.sentinels
    }

    /// How many times the master has changed since the watch started (starting it, on the
    /// current tokio runtime, the first time).
    pub(crate) fn switches(&self) -> u64 {
        self.task.get_or_init(|| {
            let switches = Arc::clone(&self.switches);
            tokio::spawn(watch(self.sentinels.clone(), switches)).abort_handle()
        });
        self.switches.load(Ordering::Acquire)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

/// Subscribe to `+switch-master` on one sentinel after another (the next when one cannot be
/// reached or drops the subscription), counting the switches of our master. A switch may
/// go unseen while no sentinel is subscribed: every new subscription after the first counts
/// as a switch, so the connection is made again through the sentinels, once.
async fn watch(sentinels: Sentinels, switches: Arc<AtomicU64>) {
    let mut subscribed_before = false;
    for node in sentinels.nodes.iter().cycle() {
        match subscribe(node).await {
            Ok(mut pubsub) => {
                if subscribed_before {
                    switches.fetch_add(1, Ordering::AcqRel);
                }
                subscribed_before = true;
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    // "<master name> <old ip> <old port> <new ip> <new port>"
                    if payload.split(' ').next() == Some(sentinels.master.as_str()) {
                        tracing::info!(switch = %payload, "redis: the Sentinel master changed; reconnecting");
                        switches.fetch_add(1, Ordering::AcqRel);
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
