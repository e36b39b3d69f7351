//! A TCP proxy in front of the broker, to make it "go away" and "come
//! back" without touching the real one.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Proxy {
    port: u16,
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// `amqp://user:pass@host:port/vhost` → (start of host, end of host:port).
fn authority(url: &str) -> (usize, usize) {
    let start = url
        .find('@')
        .map(|i| i + 1)
        .or_else(|| url.find("://").map(|i| i + 3))
        .unwrap();
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    (start, end)
}

impl Proxy {
    /// Listens on 127.0.0.1:`port` (any when `None`) and pipes every
    /// connection to the broker of `upstream_url`.
    pub async fn start(upstream_url: &str, port: Option<u16>) -> Self {
        let (start, end) = authority(upstream_url);
        let mut upstream = upstream_url[start..end].to_owned();
        if !upstream.contains(':') {
            upstream.push_str(":5672");
        }
        let listener = TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (accept_stop, accept_tracker) = (stop.clone(), tracker.clone());
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let (stop, upstream) = (accept_stop.clone(), upstream.clone());
                accept_tracker.spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream.as_str()).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self {
            port,
            stop,
            tracker,
        }
    }

    #[allow(dead_code)] // Not every test file restarts a proxy on its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `upstream_url` pointed at this proxy.
    pub fn url(&self, upstream_url: &str) -> String {
        let (start, end) = authority(upstream_url);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        format!("{}{addr}{}", &upstream_url[..start], &upstream_url[end..])
    }

    /// Stops listening and cuts every connection.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
