//! A loopback HTTP/1.1 server for the integration tests, standing in for the SaaS endpoints and
//! scrape targets the real software talks to: axum on a background thread that owns a small tokio
//! runtime, so the synchronous tests keep a synchronous API. Every request, whatever its method
//! or path, goes to one handler that decides the reply; the server stops when the stub is dropped.

use std::future::IntoFuture as _;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};
use axum::response::Response;
use tokio::sync::oneshot;

/// One request as the stub received it.
pub(super) struct StubRequest {
    pub(super) method: Method,
    /// Path and query, e.g. `/v2/alerts?x=y`.
    pub(super) uri: Uri,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl StubRequest {
    /// The HTTP request line, e.g. `GET /metrics HTTP/1.1`.
    pub(super) fn request_line(&self) -> String {
        format!("{} {} {:?}", self.method, self.uri, self.version)
    }
}

/// What the stub answers: a status, extra headers and a body, sent after `hold`.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: String,
    /// How long to hold the answer before sending it (other requests are served meanwhile).
    pub(super) hold: Duration,
}

impl Reply {
    pub(super) fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            hold: Duration::ZERO,
        }
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub(super) fn held_for(mut self, hold: Duration) -> Reply {
        self.hold = hold;
        self
    }

    fn into_response(self) -> Response {
        let mut response = Response::builder().status(
            StatusCode::from_u16(self.status)
                .unwrap_or_else(|_| panic!("{} is not an HTTP status", self.status)),
        );
        for (name, value) in self.headers {
            response = response.header(name, value);
        }
        response
            .body(Body::from(self.body))
            .expect("a valid stub reply")
    }
}

/// A running stub on `127.0.0.1:port`; stops serving when dropped.
pub(super) struct HttpStub {
    pub(super) port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpStub {
    /// Serves every request with `handler` on a fresh loopback port.
    pub(super) fn start(
        handler: impl Fn(StubRequest) -> Reply + Send + Sync + 'static,
    ) -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("the stub's address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let handler = Arc::new(handler);
        let app = axum::Router::new()
            .fallback(
                move |method: Method,
                      uri: Uri,
                      version: Version,
                      headers: HeaderMap,
                      body: Bytes| {
                    let handler = handler.clone();
                    async move {
                        let reply = handler(StubRequest {
                            method,
                            uri,
                            version,
                            headers,
                            body,
                        });
                        if !reply.hold.is_zero() {
                            tokio::time::sleep(reply.hold).await;
                        }
                        reply.into_response()
                    }
                },
            )
            .layer(DefaultBodyLimit::disable());
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("http-stub-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the stub");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    tokio::select! {
                        _ = axum::serve(listener, app).into_future() => {}
                        // Sent, or the sender dropped: the stub is gone.
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here ends every open connection.
            })
            .expect("the stub's thread starts");
        HttpStub {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
