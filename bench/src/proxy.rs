//! A TCP relay on loopback that counts round trips: how many times a client sent bytes after
//! the server had answered (or at the start). For a client that waits for each answer before
//! its next request, that is the number of requests it made of the server, whatever the
//! protocol: a statement sent as Bind + Execute + Sync is one, a ping is one, `BEGIN`,
//! `INSERT` and `COMMIT` sent one after another are three.
//!
//! It runs on a thread of its own with its own runtime, so it never runs on the measured
//! thread; only the runs that count round trips go through it (it adds a hop to every
//! request, so timed and callgrind runs connect directly).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running relay from a loopback port to `upstream`. It lives as long as the process.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    round_trips: Arc<AtomicU64>,
}

impl Proxy {
    /// Listen on `127.0.0.1:<any port>` and relay every connection to `upstream`
    /// (`host:port`).
    pub fn start(upstream: String) -> std::io::Result<Proxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&round_trips);
        std::thread::Builder::new()
            .name("round-trip-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the proxy");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let upstream = upstream.clone();
                        let counter = Arc::clone(&counter);
                        tokio::spawn(async move {
                            if let Err(e) = relay(client, &upstream, counter).await {
                                eprintln!("proxy: a connection to {upstream} failed: {e}");
                            }
                        });
                    }
                });
            })?;
        Ok(Proxy { addr, round_trips })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Round trips counted so far, over all connections.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

async fn relay(client: TcpStream, upstream: &str, counter: Arc<AtomicU64>) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Whether the last bytes relayed went from the client to the server.
    let client_spoke_last = AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            if !client_spoke_last.swap(true, Ordering::Relaxed) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            server_write.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = server_read.read(&mut buf).await?;
            if n == 0 {
                return client_write.shutdown().await;
            }
            client_spoke_last.store(false, Ordering::Relaxed);
            client_write.write_all(&buf[..n]).await?;
        }
    };
    tokio::try_join!(up, down).map(|_| ())
}
