//! HTTP for the node, on maintained crates: axum routers served on the
//! workspace's hyper serve loop, `survey-serve` (bodies bounded by size,
//! header reads by an idle timeout, accept errors backed off), and a
//! reqwest client for the node's own requests (backend health, the control
//! API's client).

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
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

/// Serves `app` on `listener` until `stop` turns true (or its sender is
/// gone); then returns once the requests in flight are answered (idle
/// connections are closed), or `limits.drain` has passed, whichever is
/// first. The loop is [`survey_serve::serve`]: an accept error (such as
/// running out of file descriptors) is logged and retried after a pause
/// that doubles up to a second, never in a busy loop.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let app = app.layer(axum::extract::DefaultBodyLimit::max(limits.max_body));
    let shutdown = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    survey_serve::serve(
        listener,
        options(limits),
        shutdown,
        TowerToHyperService::new(app),
    )
    .await
}

/// The serve loop's bounds for `limits`: [`HEADER_TIMEOUT`], no bound on
/// connections, and `limits.drain`.
fn options(limits: Limits) -> survey_serve::Options {
    survey_serve::Options {
        header_timeout: HEADER_TIMEOUT,
        max_connections: None,
        drain: limits.drain,
    }
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
