//! The router's HTTP edge: accepts connections and serves each with a deadline for its request
//! headers, and caps the connections one client address may hold open, so slow or half-sent
//! requests cannot take the router's sockets from Alertmanager. (The body's deadline is the
//! handler's: it knows the request is a webhook.) A client over its cap gets a 503 with a JSON
//! reason and `Retry-After`, and the connection is closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tracing::{debug, warn};

use super::metrics::Metrics;

/// How long a client may take to send what, and how many connections it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// From the first byte of a request (or the end of the last one) to the end of its headers.
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub body_timeout: Duration,
    /// Open connections per client address; more are refused.
    pub connections_per_client: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(15),
            connections_per_client: 128,
        }
    }
}

/// The open connections of every client address. Only addresses with an open connection are
/// kept, so the table stays as small as the connections are few.
#[derive(Debug, Default)]
pub struct ClientSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of a client; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ClientSlots>,
    client: IpAddr,
}

impl ClientSlots {
    /// A slot for one more connection of `client`, unless it holds `max` already.
    pub fn take(self: &Arc<Self>, client: IpAddr, max: usize) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&client);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            client,
        })
    }

    /// How many connections `client` holds.
    #[cfg(test)]
    fn open(&self, client: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&client).copied().unwrap_or(0)
    }

    /// How many clients hold a connection.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// The address a request's connection comes from, as a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// What a client over its cap is told before its connection is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
Content-Length: 55\r\n\
\r\n\
{\"error\": \"too many open connections from this client\"}";

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish
/// (idle connections are closed at once; a slow one within its deadlines).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: EdgeLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(ClientSlots::default());
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little instead of spinning.
                    warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = slots.take(peer.ip(), limits.connections_per_client) else {
            metrics.connections_refused.inc();
            debug!(client = %peer.ip(), "refused a connection over the client's cap");
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = Peer(peer.ip());
        let service = TowerToHyperService::new(app.clone().map_request(
            move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(client);
                request
            },
        ));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Tells a client over its cap why, without reading its request, and closes the connection.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_cap_and_gets_slots_back_when_connections_close() {
        let slots = Arc::new(ClientSlots::default());
        let a: IpAddr = "10.0.0.1".parse().expect("address");
        let b: IpAddr = "10.0.0.2".parse().expect("address");
        let held: Vec<Slot> = (0..3).filter_map(|_| slots.take(a, 3)).collect();
        assert_eq!(held.len(), 3);
        assert!(slots.take(a, 3).is_none(), "a fourth connection is refused");
        let other = slots.take(b, 3).expect("another client is not affected");
        assert_eq!((slots.open(a), slots.open(b)), (3, 1));
        drop(held);
        drop(other);
        assert_eq!(
            slots.clients(),
            0,
            "no address is kept without a connection"
        );
        assert!(slots.take(a, 0).is_none());
        assert_eq!(slots.clients(), 0);
    }

    #[test]
    fn the_refusal_is_a_complete_json_answer() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse().ok())
            .expect("Content-Length");
        assert_eq!(length, body.len());
        let reason: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert!(reason["error"].is_string());
    }
}
