//! The node's local control API, on 127.0.0.1 only, and its client.
//!
//! | request | does |
//! |---|---|
//! | `GET /status` | loaded models, unexpected exits, survey status |
//! | `POST /models` with a [`LoadRequest`] | runtime load |
//! | `DELETE /models/NAME` | unload |

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::http;
use crate::runtime::{LoadRequest, ModelStatus, Node, NodeError, NodeStatus};

/// Default control API address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3131";

/// The body of a successful unload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unloaded {
    /// The name or path that was unloaded.
    pub unloaded: String,
}

/// An error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for people.
    pub error: String,
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, node: Node) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let Ok(Ok(request)) =
                tokio::time::timeout(Duration::from_secs(10), http::read_request(&mut stream))
                    .await
            else {
                return;
            };
            let (status, body) = route(&node, request).await;
            let _ = http::write_response(&mut stream, status, "application/json", &body).await;
        });
    }
}

async fn route(node: &Node, request: http::Request) -> (u16, Vec<u8>) {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/status") => json(200, &node.status()),
        ("POST", "/models") => match serde_json::from_slice::<LoadRequest>(&request.body) {
            Err(e) => json(
                400,
                &ApiError {
                    error: format!("bad load request: {e}"),
                },
            ),
            Ok(load) => match node.load(load).await {
                Ok(status) => json(200, &status),
                Err(error) => json(
                    error_status(&error),
                    &ApiError {
                        error: error.to_string(),
                    },
                ),
            },
        },
        ("DELETE", path) if path.starts_with("/models/") => {
            let name = percent_decode(&path["/models/".len()..]);
            match node.unload(&name).await {
                Ok(()) => json(200, &Unloaded { unloaded: name }),
                Err(error) => json(
                    error_status(&error),
                    &ApiError {
                        error: error.to_string(),
                    },
                ),
            }
        }
        _ => json(
            404,
            &ApiError {
                error: "not found".into(),
            },
        ),
    }
}

fn error_status(error: &NodeError) -> u16 {
    match error {
        NodeError::AlreadyLoaded(_) => 409,
        NodeError::NotLoaded(_) => 404,
        NodeError::Launch(_) | NodeError::Stop(_) => 500,
    }
}

fn json(status: u16, value: &impl Serialize) -> (u16, Vec<u8>) {
    (status, serde_json::to_vec(value).unwrap_or_default())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

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
#[derive(Debug, Clone, Copy)]
pub struct Client {
    addr: SocketAddr,
}

impl Client {
    /// A client of the node at `addr`.
    pub fn new(addr: SocketAddr) -> Client {
        Client { addr }
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.call("GET", "/status", None, Duration::from_secs(10))
            .await
    }

    /// Loads a model; waits as long as the launch takes (up to `timeout`).
    pub async fn load(
        &self,
        request: &LoadRequest,
        timeout: Duration,
    ) -> Result<ModelStatus, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.call("POST", "/models", Some(&body), timeout).await
    }

    /// Unloads a model by name or path.
    pub async fn unload(&self, name: &str, timeout: Duration) -> Result<(), ClientError> {
        let path = format!("/models/{}", percent_encode(name));
        let _: Unloaded = self.call("DELETE", &path, None, timeout).await?;
        Ok(())
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let response = http::request(self.addr, method, path, body, timeout)
            .await
            .map_err(|source| ClientError::Unreachable {
                addr: self.addr,
                source,
            })?;
        if response.status != 200 {
            let error = serde_json::from_slice::<ApiError>(&response.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {}", response.status));
            return Err(ClientError::Node(error));
        }
        serde_json::from_slice(&response.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}
