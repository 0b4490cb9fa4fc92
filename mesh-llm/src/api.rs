//! The node's local control API, on 127.0.0.1 only, and its client.
//!
//! | request | does |
//! |---|---|
//! | `GET /status` | loaded models, unexpected exits, survey status |
//! | `POST /models` with a [`LoadRequest`] | runtime load |
//! | `DELETE /models/NAME` | unload |
//! | `GET /survey/export` | the content of survey's last export, and whether the opt-in inference metrics are on (`survey show`) |

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::backend::local::StopError;
use crate::http::{self, json};
use crate::node::{LoadRequest, ModelStatus, Node, NodeError, NodeStatus};

/// Default control API address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3131";

/// The body of a successful unload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unloaded {
    /// The name or path that was unloaded.
    pub unloaded: String,
}

/// The answer of `GET /survey/export`: survey's last export, and whether
/// the opt-in inference metrics are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyExport {
    /// Whether survey records the opt-in inference metrics
    /// (`[telemetry] prompt_shape_metrics`).
    pub prompt_shape_metrics: bool,
    /// The last export.
    #[serde(flatten)]
    pub export: survey::LastExport,
}

/// An error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for people.
    pub error: String,
}

/// The API's routes.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/models", post(load))
        .route("/models/{name}", delete(unload))
        .route("/survey/export", get(survey_export))
        .fallback(not_found)
        .with_state(node)
}

/// Serves the API on `listener` until `stop` turns true; requests in
/// flight then get `drain` to be answered.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    drain: Duration,
    stop: watch::Receiver<bool>,
) {
    let limits = http::Limits {
        max_body: http::MAX_BODY,
        drain,
    };
    http::serve(listener, router(node), limits, stop).await
}

async fn status(State(node): State<Node>) -> Response {
    json(StatusCode::OK, &node.status())
}

async fn survey_export() -> Response {
    match survey::last_export() {
        Some(export) => json(
            StatusCode::OK,
            &SurveyExport {
                prompt_shape_metrics: survey::status().prompt_shape_metrics,
                export: (*export).clone(),
            },
        ),
        None => {
            let status = survey::status();
            let why = if status.enabled {
                "survey has not exported yet: the first export comes one interval after the start"
                    .to_string()
            } else {
                status.to_string()
            };
            error(StatusCode::NOT_FOUND, why)
        }
    }
}

async fn load(State(node): State<Node>, body: Bytes) -> Response {
    match serde_json::from_slice::<LoadRequest>(&body) {
        Err(e) => error(StatusCode::BAD_REQUEST, format!("bad load request: {e}")),
        Ok(request) => match node.load(request).await {
            Ok(status) => json(StatusCode::OK, &status),
            Err(e) => error(error_status(&e), e.to_string()),
        },
    }
}

async fn unload(State(node): State<Node>, Path(name): Path<String>) -> Response {
    match node.unload(&name).await {
        Ok(()) => json(StatusCode::OK, &Unloaded { unloaded: name }),
        Err(e) => error(error_status(&e), e.to_string()),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found".into())
}

fn error_status(error: &NodeError) -> StatusCode {
    match error {
        NodeError::AlreadyLoaded(_) | NodeError::Stop(StopError::AlreadyStopping) => {
            StatusCode::CONFLICT
        }
        NodeError::NotLoaded(_) => StatusCode::NOT_FOUND,
        NodeError::Launch(_) | NodeError::Stop(_) | NodeError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        NodeError::ShuttingDown | NodeError::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn error(status: StatusCode, error: String) -> Response {
    json(status, &ApiError { error })
}

/// A path segment as it goes into a URL: everything but unreserved
/// characters percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node answered.
    #[error("cannot reach the node's control API at {addr}: {source}")]
    Unreachable {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The node answered with an error.
    #[error("{0}")]
    Node(String),
    /// The answer could not be decoded.
    #[error("unexpected answer from the node: {0}")]
    Decode(String),
}

/// A client of the control API.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Client {
    /// A client of the node at `addr`.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            http: http::client(),
        }
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.call(
            reqwest::Method::GET,
            "/status",
            None,
            Duration::from_secs(10),
        )
        .await
    }

    /// The content of survey's last export, and whether the opt-in
    /// inference metrics are on.
    pub async fn survey_export(&self) -> Result<SurveyExport, ClientError> {
        self.call(
            reqwest::Method::GET,
            "/survey/export",
            None,
            Duration::from_secs(10),
        )
        .await
    }

    /// Loads a model; waits as long as the launch takes (up to `timeout`).
    pub async fn load(
        &self,
        request: &LoadRequest,
        timeout: Duration,
    ) -> Result<ModelStatus, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.call(reqwest::Method::POST, "/models", Some(body), timeout)
            .await
    }

    /// Unloads a model by name or path.
    pub async fn unload(&self, name: &str, timeout: Duration) -> Result<(), ClientError> {
        let path = format!("/models/{}", utf8_percent_encode(name, SEGMENT));
        let _: Unloaded = self
            .call(reqwest::Method::DELETE, &path, None, timeout)
            .await?;
        Ok(())
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let mut request = self
            .http
            .request(method, http::url(self.addr, path))
            .timeout(timeout);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let unreachable = |error: reqwest::Error| ClientError::Unreachable {
            addr: self.addr,
            source: std::io::Error::other(causes(&error)),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status != reqwest::StatusCode::OK {
            let error = serde_json::from_slice::<ApiError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {}", status.as_u16()));
            return Err(ClientError::Node(error));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// An error and its causes, innermost last: `a: b: c`.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_path_segment() {
        let encoded = utf8_percent_encode("/models/a b%.gguf", SEGMENT).to_string();
        assert_eq!(encoded, "%2Fmodels%2Fa%20b%25.gguf");
        let decoded = percent_encoding::percent_decode_str(&encoded)
            .decode_utf8()
            .unwrap();
        assert_eq!(decoded, "/models/a b%.gguf");
    }
}
