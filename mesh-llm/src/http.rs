//! HTTP for the node, on maintained crates: axum routers served over hyper
//! (bodies bounded by size, header reads by an idle timeout, accept errors
//! backed off), and a reqwest client for the node's own requests (backend
//! health, the control API's client).

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest request body the control API accepts.
pub const MAX_BODY: usize = 1 << 20;

/// Largest request body the inference API accepts (prompts, images).
pub const MAX_INFERENCE_BODY: usize = 32 << 20;

/// How long a connection may take to send a request's headers, and stay
/// idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, in bytes (larger: 413).
    pub max_body: usize,
    /// How long requests in flight may take to finish after the stop;
    /// connections still open then are closed.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `stop` turns true; then returns once
/// the requests in flight are answered (idle connections are closed), or
/// `limits.drain` has passed, whichever is first. An accept error (such as
/// running out of file descriptors) is logged and retried after a pause
/// that doubles up to a second, never in a busy loop.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    serve_with(listener, app, limits, stop, |stream, app, stop| {
        connection(stream, app, stop, std::future::pending())
    })
    .await
}

/// [`serve`], each accepted connection handed to `connect` (with the app,
/// its body limit applied, and the stop) to be served.
pub(crate) async fn serve_with<F, C>(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    connect: F,
) where
    F: Fn(tokio::net::TcpStream, axum::Router, watch::Receiver<bool>) -> C,
    C: std::future::Future<Output = ()> + Send + 'static,
{
    let app = app.layer(axum::extract::DefaultBodyLimit::max(limits.max_body));
    let mut pause = Duration::from_millis(10);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => {
                drop(listener);
                let drained = async { while connections.join_next().await.is_some() {} };
                if tokio::time::timeout(limits.drain, drained).await.is_err() {
                    tracing::warn!(
                        "closing {} connections still open {:?} after the stop",
                        connections.len(),
                        limits.drain
                    );
                }
                // Dropping the set closes what is left.
                return;
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                pause = Duration::from_millis(10);
                stream
            }
            Err(error) => {
                tracing::warn!("cannot accept a connection: {error}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connect(stream, app.clone(), stop.clone()));
    }
}

/// Serves one connection until it ends, or the stop, or `close` (for
/// both, the answer in progress is finished first).
pub(crate) async fn connection<I>(
    io: I,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    close: impl std::future::Future<Output = ()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        // Keep-alive off: hyper finishes the answer in progress, then
        // closes (headers already written stay as they are).
        _ = close => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The node's HTTP client: plain HTTP to loopback addresses, each request
/// bounded by the caller's timeout.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("an HTTP client with default settings builds")
}

/// The settings of [`client`], for a client that needs more. It trusts no
/// certificate at all: the node speaks plain HTTP to loopback only, so it
/// never reads the system's CA store (which may be missing, and which
/// would otherwise be loaded for every client built).
pub fn client_builder() -> reqwest::ClientBuilder {
    // The workspace's reqwest brings rustls without a chosen provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(std::iter::empty())
}

/// A JSON answer with `status`.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

/// `http://ADDR{path}`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}
