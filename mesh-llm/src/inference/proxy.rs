//! The inference API: an OpenAI-compatible front for the node's backends.
//!
//! | request | does |
//! |---|---|
//! | `GET /v1/models` | the models the node serves, by the names `status` shows |
//! | `POST /v1/chat/completions` | forwarded to the backend of the body's `model` |
//! | `POST /v1/completions` | the same |
//!
//! Bodies pass through unchanged both ways. A request body is read whole
//! (to find its `model` and whether it asks for a `stream`); an answer is
//! streamed (SSE answers arrive as the backend writes them). Nothing of a
//! request or an answer is logged: only the model name, the path and the
//! status reach the log.
//!
//! With survey's `prompt_shape_metrics` on ([`Proxy::measure_inference`]),
//! each request forwarded to a backend is recorded once, through
//! `survey::record_inference`, against the loaded instance its route
//! serves: its outcome, and for an answer in full the numbers the backend
//! reported and the time to its first token (see [`super::meter`] for what
//! is read and kept). A request for a model not served reaches no backend
//! and records nothing; neither does a launch's check.
//!
//! | how the request ended | outcome |
//! |---|---|
//! | a 2xx answer in full (`data: [DONE]`, or a whole body) | `ok` |
//! | the backend answered 4xx/5xx, could not be reached, or broke off | `backend_error` |
//! | the backend was silent past the idle timeout | `timeout` |
//! | the client hung up before the answer ended | `client_cancelled` |
//! | cut at node shutdown | `shutdown` |
//!
//! **Backend connections.** llama-server closes its connection after a
//! streamed answer, without saying so in the answer's headers
//! (`Keep-Alive` and no `Connection: close`); a connection pooled after a
//! streamed answer is dead, and a request written to it fails. So a
//! request that may be answered as a stream (`stream` not absent, `null`
//! or `false`) goes through a client that pools nothing: its connection is
//! never reused, and no request is ever written to a connection the
//! backend closed after a stream. Whole answers keep their connection
//! (llama-server keeps it 5 s), reused for at most 2 s of idleness, so the
//! pool drops it before the backend does. A request is never sent twice by
//! the proxy: the client retries only a request it never wrote (a pooled
//! connection found closed before the write).
//!
//! A launch adds its model's route and checks it through this same
//! forwarding path ([`Proxy::check`]) before the launch counts as a success.
//! At node shutdown the proxy takes no new requests ([`Proxy::close`]),
//! gives those in flight time to finish ([`Proxy::drained`]), then cuts the
//! rest ([`Proxy::cut`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use survey::{ModelFacts, RequestOutcome};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{self, json};
use crate::inference::meter::{self, Meter, Record};
use crate::tracker::{Tracker, UnderWay};

/// Default address of the inference API.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9337";

/// Default bound on a backend's silence: the wait for its answer to begin
/// (a long prompt is read before the first byte) and between two chunks.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a launch's check through the proxy may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle pooled backend connection is reused: under
/// llama-server's keep-alive (5 s), so the pool drops it before the
/// backend closes it.
const POOL_IDLE: Duration = Duration::from_secs(2);

/// Routes inference requests to the backends, by model name.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    routes: RwLock<BTreeMap<String, Route>>,
    /// For requests answered whole, launch checks and health checks:
    /// pooled.
    client: reqwest::Client,
    /// For requests that may be answered as a stream: pools nothing (see
    /// the module's doc).
    unpooled: reqwest::Client,
    idle_timeout: Duration,
    /// Whether requests are measured and recorded (survey's
    /// `prompt_shape_metrics`).
    measure: AtomicBool,
    /// Where measured requests go.
    record: Record,
    /// Requests being forwarded, answers being streamed included.
    in_flight: Tracker,
    /// Set at shutdown: new requests are refused.
    closed: AtomicBool,
    /// Set when shutdown stops waiting: requests in flight are cut.
    cut: watch::Sender<bool>,
    /// Never set: what launch checks watch instead of `cut`.
    never_cut: watch::Sender<bool>,
}

#[derive(Debug, Clone)]
struct Route {
    instance: u64,
    /// The loaded instance, as survey knows it from its launch.
    model: Arc<ModelFacts>,
    port: u16,
    created: u64,
    /// Served: false while its launch checks it (only the check may use it).
    live: bool,
}

/// Who is forwarding: a client's request, or a launch checking its route
/// (which may use a route not yet live, and is not cut at shutdown: the
/// shutdown cancels the launch itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Client,
    LaunchCheck,
}

/// The longest model name the proxy repeats (in its log and its answers).
const MAX_NAME_SHOWN: usize = 128;

/// `name`, cut to [`MAX_NAME_SHOWN`] characters.
fn shown(name: &str) -> String {
    match name.char_indices().nth(MAX_NAME_SHOWN) {
        Some((end, _)) => format!("{}...", &name[..end]),
        None => name.to_string(),
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("models", &self.models())
            .field("idle_timeout", &self.inner.idle_timeout)
            .finish()
    }
}

impl Default for Proxy {
    fn default() -> Proxy {
        Proxy::new(DEFAULT_IDLE_TIMEOUT)
    }
}

/// Why a request could not be forwarded; each is one HTTP status and an
/// OpenAI-style error body.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The body is not a JSON object with a string `model`.
    #[error("{0}")]
    BadRequest(String),
    /// No backend serves this model (the name as shown, cut if long).
    #[error("the model `{0}` does not exist")]
    UnknownModel(String),
    /// The body is larger than the inference API takes.
    #[error("the request body is larger than {} bytes", http::MAX_INFERENCE_BODY)]
    TooLarge,
    /// The endpoint takes another method.
    #[error("this endpoint takes another method")]
    MethodNotAllowed,
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Closing,
    /// The backend could not be reached or broke off.
    #[error("the backend of `{model}` did not answer: {cause}")]
    Backend {
        /// The model.
        model: String,
        /// Why, without any content of the request.
        cause: String,
    },
    /// The backend was silent longer than the idle timeout.
    #[error("the backend of `{model}` was silent for {after:?}")]
    TimedOut {
        /// The model.
        model: String,
        /// The idle timeout.
        after: Duration,
    },
}

impl ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::UnknownModel(_) => StatusCode::NOT_FOUND,
            ProxyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Closing => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Backend { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn body(&self) -> ErrorBody {
        let (kind, param, code) = match self {
            ProxyError::BadRequest(_) | ProxyError::TooLarge | ProxyError::MethodNotAllowed => {
                ("invalid_request_error", None, None)
            }
            ProxyError::UnknownModel(_) => (
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            ProxyError::Closing => ("unavailable_error", None, None),
            ProxyError::Backend { .. } | ProxyError::TimedOut { .. } => {
                ("server_error", None, None)
            }
        };
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind: kind.to_string(),
                param: param.map(str::to_string),
                code: code.map(str::to_string),
            },
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        json(self.status(), &self.body())
    }
}

/// An OpenAI-style error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong, for people.
    pub message: String,
    /// The error's class (`invalid_request_error`, `server_error`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code, if one applies (`model_not_found`).
    pub code: Option<String>,
}

/// The answer of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models served.
    pub data: Vec<ModelEntry>,
}

/// One model of a [`ModelList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// The name requests use in `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// When the model began to be served, in Unix seconds.
    pub created: u64,
    /// Always `mesh-llm`.
    pub owned_by: String,
}

/// The fields of a request the proxy reads.
#[derive(Deserialize)]
struct Routed {
    model: String,
    /// Whether the answer may be a stream: anything but absent, `null`
    /// and `false` counts as maybe.
    #[serde(default)]
    stream: Option<serde_json::Value>,
}

impl Routed {
    fn may_stream(&self) -> bool {
        !matches!(
            self.stream,
            None | Some(serde_json::Value::Null | serde_json::Value::Bool(false))
        )
    }
}

/// What a client's request brings to [`Proxy::forward`].
struct ClientRequest {
    /// When the handler had it, its body read.
    accepted: Instant,
    /// Whether its answer may be a stream.
    may_stream: bool,
}

impl Proxy {
    /// A proxy with no routes; a backend silent for `idle_timeout` is cut.
    pub fn new(idle_timeout: Duration) -> Proxy {
        Proxy::with_record(idle_timeout, meter::to_survey())
    }

    fn with_record(idle_timeout: Duration, record: Record) -> Proxy {
        let client = http::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .expect("an HTTP client with default settings builds");
        let unpooled = http::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client with default settings builds");
        Proxy {
            inner: Arc::new(Inner {
                routes: RwLock::new(BTreeMap::new()),
                client,
                unpooled,
                idle_timeout,
                measure: AtomicBool::new(false),
                record,
                in_flight: Tracker::default(),
                closed: AtomicBool::new(false),
                cut: watch::Sender::new(false),
                never_cut: watch::Sender::new(false),
            }),
        }
    }

    /// Measures and records every request forwarded from now on (`on`),
    /// or none: the node turns it on when survey's
    /// `prompt_shape_metrics` is.
    pub fn measure_inference(&self, on: bool) {
        self.inner.measure.store(on, Ordering::Relaxed);
    }

    /// Adds a route for `name` to the backend on 127.0.0.1:`port`, serving
    /// the loaded instance `model` (its survey facts, keyed as its
    /// launch's), not yet served: [`Proxy::check`] may use it, clients may
    /// not until [`Proxy::publish_route`].
    pub fn add_route(&self, name: &str, model: ModelFacts, port: u16) {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.write_routes().insert(
            name.to_string(),
            Route {
                instance: model.instance().as_u64(),
                model: Arc::new(model),
                port,
                created,
                live: false,
            },
        );
    }

    /// Serves the route of `name` to clients, if it is still this instance's.
    pub fn publish_route(&self, name: &str, instance: u64) {
        if let Some(route) = self
            .write_routes()
            .get_mut(name)
            .filter(|r| r.instance == instance)
        {
            route.live = true;
        }
    }

    /// Stops routing `name`, if its route is still this instance's.
    pub fn remove_route(&self, name: &str, instance: u64) {
        let mut routes = self.write_routes();
        if routes.get(name).is_some_and(|r| r.instance == instance) {
            routes.remove(name);
        }
    }

    /// The HTTP client the proxy forwards with; launches share it for their
    /// health checks.
    pub(crate) fn http_client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// The names served, in order.
    pub fn models(&self) -> Vec<String> {
        self.read_routes()
            .iter()
            .filter(|(_, r)| r.live)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Requests being forwarded now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.count()
    }

    /// Checks the route of `name` end to end: `GET /v1/models` on its
    /// backend, through the forwarding path inference takes, must answer
    /// 200 with a JSON model list. `Err` says why not.
    pub async fn check(&self, name: &str) -> Result<(), String> {
        let check = async {
            let in_flight = self.inner.in_flight.enter();
            let response = self
                .forward(
                    Caller::LaunchCheck,
                    in_flight,
                    name,
                    Method::GET,
                    "/v1/models",
                    &HeaderMap::new(),
                    Bytes::new(),
                    None,
                )
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .map_err(|e| format!("reading its answer: {e}"))?;
            if status != StatusCode::OK {
                return Err(format!("GET /v1/models answered {status}"));
            }
            let list: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| "GET /v1/models did not answer JSON".to_string())?;
            if list.get("data").is_some_and(|d| d.is_array()) {
                Ok(())
            } else {
                Err("GET /v1/models answered no model list".to_string())
            }
        };
        tokio::time::timeout(CHECK_TIMEOUT, check)
            .await
            .unwrap_or_else(|_| Err(format!("GET /v1/models took over {CHECK_TIMEOUT:?}")))
    }

    /// Refuses new requests (503) from now on.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
    }

    /// Waits up to `within` for the requests in flight to finish; whether
    /// they did.
    pub async fn drained(&self, within: Duration) -> bool {
        self.inner.in_flight.idle_within(within).await
    }

    /// Cuts every request in flight: answers not begun get a 503, answers
    /// being streamed end abruptly.
    pub fn cut(&self) {
        self.inner.cut.send_replace(true);
    }

    /// The inference API's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/models", get(list_models))
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/completions", post(completions))
            .fallback(not_found)
            .method_not_allowed_fallback(|| async { ProxyError::MethodNotAllowed.into_response() })
            .with_state(self.clone())
    }

    /// Serves the inference API on `listener` until `stop` turns true.
    pub async fn serve(&self, listener: TcpListener, drain: Duration, stop: watch::Receiver<bool>) {
        let limits = http::Limits {
            max_body: http::MAX_INFERENCE_BODY,
            drain,
        };
        http::serve(listener, self.router(), limits, stop).await
    }

    /// Forwards one request for `model` to its backend; the answer's body
    /// streams through as the backend writes it. A client's request
    /// (`client`) is measured when measuring is on.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        caller: Caller,
        in_flight: UnderWay,
        model: &str,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        client: Option<ClientRequest>,
    ) -> Result<Response, ProxyError> {
        let (port, instance) = self
            .read_routes()
            .get(model)
            .filter(|r| r.live || caller == Caller::LaunchCheck)
            .map(|r| (r.port, r.model.clone()))
            .ok_or_else(|| ProxyError::UnknownModel(shown(model)))?;
        let mut cut = match caller {
            Caller::Client => self.inner.cut.subscribe(),
            Caller::LaunchCheck => self.inner.never_cut.subscribe(),
        };
        // From here the request is forwarded: measured, if measuring is
        // on, and recorded once whatever happens (a meter dropped before
        // the answer's end records `client_cancelled`).
        let mut meter = client
            .as_ref()
            .filter(|_| self.inner.measure.load(Ordering::Relaxed))
            .map(|c| Meter::new(instance, self.inner.record.clone(), c.accepted));
        let finish = |meter: &mut Option<Meter>, outcome| {
            if let Some(meter) = meter {
                meter.finish(outcome);
            }
        };
        let http_client = match &client {
            Some(c) if c.may_stream => &self.inner.unpooled,
            _ => &self.inner.client,
        };
        let url = http::url(SocketAddr::from(([127, 0, 0, 1], port)), path);
        let mut request = http_client.request(method, url).body(body);
        for name in [header::CONTENT_TYPE, header::ACCEPT] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        let idle = self.inner.idle_timeout;
        let response = tokio::select! {
            answer = tokio::time::timeout(idle, request.send()) => match answer {
                Ok(Ok(answer)) => answer,
                Ok(Err(error)) => {
                    finish(&mut meter, RequestOutcome::BackendError);
                    return Err(ProxyError::Backend {
                        model: model.to_string(),
                        cause: transport_cause(&error),
                    });
                }
                Err(_) => {
                    finish(&mut meter, RequestOutcome::Timeout);
                    return Err(ProxyError::TimedOut { model: model.to_string(), after: idle });
                }
            },
            _ = cut.wait_for(|cut| *cut) => {
                finish(&mut meter, RequestOutcome::Shutdown);
                return Err(ProxyError::Closing);
            }
        };
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        if !status.is_success() {
            // The backend's error passes through; nothing of it is read.
            finish(&mut meter, RequestOutcome::BackendError);
            meter = None;
        }
        if let Some(meter) = &mut meter {
            let events = content_type
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            meter.answer_begins(events);
        }
        let upstream = response.bytes_stream();
        let passing = Passing {
            upstream,
            cut,
            _in_flight: in_flight,
            meter,
        };
        let body = futures::stream::unfold(Some(passing), move |state| async move {
            let mut passing = state?;
            let next = tokio::select! {
                next = tokio::time::timeout(idle, passing.upstream.next()) => Some(next),
                _ = passing.cut.wait_for(|cut| *cut) => None,
            };
            let Some(next) = next else {
                passing.finish(RequestOutcome::Shutdown);
                return Some((Err(std::io::Error::other("cut at node shutdown")), None));
            };
            match next {
                Ok(Some(Ok(chunk))) => {
                    if let Some(meter) = &mut passing.meter {
                        meter.read(&chunk);
                    }
                    Some((Ok(chunk), Some(passing)))
                }
                Ok(Some(Err(error))) => {
                    passing.finish(RequestOutcome::BackendError);
                    Some((Err(std::io::Error::other(transport_cause(&error))), None))
                }
                Ok(None) => {
                    if let Some(meter) = &mut passing.meter {
                        meter.answer_ended();
                    }
                    None
                }
                Err(_) => {
                    passing.finish(RequestOutcome::Timeout);
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the backend went silent",
                        )),
                        None,
                    ))
                }
            }
        });
        let mut answer = Response::new(Body::from_stream(body));
        *answer.status_mut() = status;
        if let Some(content_type) = content_type {
            answer
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        Ok(answer)
    }

    /// Forwards a POST whose JSON body names its model.
    async fn route_post(
        &self,
        path: &str,
        headers: HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Response {
        // Counted before the check of `closed`: a shutdown that sees no
        // request in flight has closed the door on any later one.
        let in_flight = self.inner.in_flight.enter();
        if self.inner.closed.load(Ordering::SeqCst) {
            return ProxyError::Closing.into_response();
        }
        let body = match body {
            Ok(body) => body,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return ProxyError::TooLarge.into_response();
            }
            Err(_) => {
                return ProxyError::BadRequest("the request body could not be read".into())
                    .into_response();
            }
        };
        let accepted = Instant::now();
        let routed = match serde_json::from_slice::<Routed>(&body) {
            Ok(routed) => routed,
            Err(error) => {
                // serde_json's message names a position, never content.
                return ProxyError::BadRequest(format!(
                    "the body must be a JSON object with a string `model`: {}",
                    error_class(&error)
                ))
                .into_response();
            }
        };
        let client = ClientRequest {
            accepted,
            may_stream: routed.may_stream(),
        };
        let answer = self
            .forward(
                Caller::Client,
                in_flight,
                &routed.model,
                Method::POST,
                path,
                &headers,
                body,
                Some(client),
            )
            .await;
        let model = shown(&routed.model);
        match answer {
            Ok(response) => {
                tracing::debug!(%model, path, status = %response.status(), "proxied");
                response
            }
            // The name came from the request body: it is answered back to
            // the client, never written to the log.
            Err(error @ ProxyError::UnknownModel(_)) => {
                tracing::debug!(path, "inference request refused: model not served");
                error.into_response()
            }
            Err(error) => {
                tracing::warn!(%model, path, "inference request failed: {error}");
                error.into_response()
            }
        }
    }

    fn read_routes(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Route>> {
        self.inner.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_routes(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Route>> {
        self.inner.routes.write().unwrap_or_else(|e| e.into_inner())
    }
}

async fn list_models(State(proxy): State<Proxy>) -> Response {
    let data = proxy
        .read_routes()
        .iter()
        .filter(|(_, route)| route.live)
        .map(|(name, route)| ModelEntry {
            id: name.clone(),
            object: "model".to_string(),
            created: route.created,
            owned_by: "mesh-llm".to_string(),
        })
        .collect();
    json(
        StatusCode::OK,
        &ModelList {
            object: "list".to_string(),
            data,
        },
    )
}

async fn chat_completions(
    State(proxy): State<Proxy>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    proxy
        .route_post("/v1/chat/completions", headers, body)
        .await
}

async fn completions(
    State(proxy): State<Proxy>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    proxy.route_post("/v1/completions", headers, body).await
}

async fn not_found() -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            message: "no such endpoint; this node serves /v1/models, /v1/chat/completions and \
                      /v1/completions"
                .to_string(),
            kind: "invalid_request_error".to_string(),
            param: None,
            code: None,
        },
    };
    json(StatusCode::NOT_FOUND, &body)
}

/// What kind of JSON error, with its position: never the text around it.
fn error_class(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not valid JSON",
        Category::Data => "`model` missing or not a string",
        Category::Eof => "truncated JSON",
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

/// An answer passing through: the backend's body, what can cut it, the
/// request's place among those in flight, and its meter.
struct Passing<S> {
    upstream: S,
    cut: watch::Receiver<bool>,
    /// Held until the answer ends.
    _in_flight: UnderWay,
    meter: Option<Meter>,
}

impl<S> Passing<S> {
    fn finish(&mut self, outcome: RequestOutcome) {
        if let Some(meter) = &mut self.meter {
            meter.finish(outcome);
        }
    }
}

/// A transport error's kind, without the URL's query or any body.
fn transport_cause(error: &reqwest::Error) -> String {
    if error.is_connect() {
        "cannot connect".to_string()
    } else if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_body() || error.is_decode() {
        "its answer broke off".to_string()
    } else {
        "the connection failed".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `app` on a free loopback port until the returned sender drops.
    async fn serve(app: Router) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let limits = http::Limits {
            max_body: http::MAX_BODY,
            drain: Duration::ZERO,
        };
        tokio::spawn(http::serve(listener, app, limits, stopped));
        (addr, stop)
    }

    async fn chat(client: &reqwest::Client, proxy: SocketAddr) -> (u16, String) {
        let response = client
            .post(http::url(proxy, "/v1/chat/completions"))
            .body(r#"{"model":"m","messages":[]}"#)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    #[tokio::test]
    async fn a_route_serves_clients_only_once_published_and_checks_pass_through_shutdown() {
        let backend = Router::new()
            .route(
                "/v1/models",
                get(|| async { r#"{"object":"list","data":[]}"# }),
            )
            .route("/v1/chat/completions", post(|| async { "answered" }));
        let (backend, _backend_stop) = serve(backend).await;
        let proxy = Proxy::default();
        let (front, _front_stop) = serve(proxy.router()).await;
        let client = http::client();

        proxy.add_route("m", ModelFacts::new(1u64, "m"), backend.port());
        // Being checked: the check reaches it, clients do not.
        assert_eq!(proxy.check("m").await, Ok(()));
        assert_eq!(chat(&client, front).await.0, 404);
        assert!(proxy.models().is_empty());
        proxy.publish_route("m", 1);
        assert_eq!(chat(&client, front).await, (200, "answered".to_string()));
        assert_eq!(proxy.models(), ["m"]);

        // Shutdown: clients are refused, a launch's check is not cut.
        proxy.close();
        proxy.cut();
        let (status, body) = chat(&client, front).await;
        assert_eq!(status, 503);
        let error: ErrorBody = serde_json::from_str(&body).unwrap();
        assert_eq!(error.error.kind, "unavailable_error");
        assert_eq!(proxy.check("m").await, Ok(()));
        assert_eq!(proxy.in_flight(), 0);

        // Another instance's removal leaves the route; its own removes it.
        proxy.remove_route("m", 2);
        assert_eq!(proxy.models(), ["m"]);
        proxy.remove_route("m", 1);
        assert!(proxy.models().is_empty());
        assert!(
            proxy
                .check("m")
                .await
                .unwrap_err()
                .contains("does not exist")
        );
    }

    /// The measured requests of a proxy built by [`measured`].
    type Records = Arc<std::sync::Mutex<Vec<(u64, survey::Inference)>>>;

    /// A proxy measuring every request into the returned list.
    fn measured() -> (Proxy, Records) {
        let records: Records = Arc::default();
        let sink = records.clone();
        let proxy = Proxy::with_record(
            Duration::from_secs(5),
            Arc::new(move |model: &ModelFacts, inference| {
                sink.lock()
                    .unwrap()
                    .push((model.instance().as_u64(), inference));
            }),
        );
        proxy.measure_inference(true);
        (proxy, records)
    }

    /// What the backend of [`closing_backend`] saw.
    #[derive(Default)]
    struct Seen {
        /// Requests read and answered.
        answered: std::sync::atomic::AtomicUsize,
        /// Requests written to a connection after a streamed answer on it,
        /// which the backend closes without answering.
        lost: std::sync::atomic::AtomicUsize,
    }

    /// Reads one request's head and body; `None` at the connection's end.
    async fn read_request(
        stream: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    ) -> Option<Vec<u8>> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut length = 0;
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().ok()?;
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.ok()?;
        Some(body)
    }

    /// A backend on the wire as llama-server is: whole answers keep their
    /// connection; a streamed answer (chunked SSE, ending in `[DONE]`,
    /// headers saying `Keep-Alive` and no `Connection: close`) is followed
    /// by a close. The close waits for the next request (up to 2 s), so a
    /// request written to that connection is lost every time, not only
    /// when it loses a race.
    async fn closing_backend() -> (SocketAddr, Arc<Seen>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let counts = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = counts.clone();
                tokio::spawn(async move {
                    let mut stream = tokio::io::BufReader::new(stream);
                    while let Some(body) = read_request(&mut stream).await {
                        seen.answered.fetch_add(1, Ordering::SeqCst);
                        let timings = r#""timings":{"cache_n":0,"prompt_n":8,"prompt_ms":4.0,"predicted_n":2,"predicted_ms":20.0}"#;
                        let streamed = String::from_utf8_lossy(&body).contains(r#""stream":true"#);
                        if !streamed {
                            let answer = format!(
                                r#"{{"choices":[{{"message":{{"content":"a b"}}}}],"usage":{{"prompt_tokens":8,"completion_tokens":2}},{timings}}}"#
                            );
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: {}\r\n\r\n",
                                answer.len()
                            );
                            let written = stream.write_all(head.as_bytes()).await;
                            if written
                                .and(stream.write_all(answer.as_bytes()).await)
                                .is_err()
                            {
                                return;
                            }
                            continue;
                        }
                        let mut out = String::from(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nKeep-Alive: timeout=5, max=100\r\nTransfer-Encoding: chunked\r\n\r\n",
                        );
                        for event in [
                            r#"{"choices":[{"delta":{"content":"a"}}]}"#.to_string(),
                            format!(
                                r#"{{"choices":[{{"finish_reason":"stop","delta":{{}}}}],{timings}}}"#
                            ),
                            "[DONE]".to_string(),
                        ] {
                            let data = format!("data: {event}\n\n");
                            out.push_str(&format!("{:x}\r\n{data}\r\n", data.len()));
                        }
                        out.push_str("0\r\n\r\n");
                        if stream.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut next = [0u8; 1];
                        let wait =
                            tokio::time::timeout(Duration::from_secs(2), stream.read(&mut next));
                        if let Ok(Ok(1..)) = wait.await {
                            seen.lost.fetch_add(1, Ordering::SeqCst);
                        }
                        return;
                    }
                });
            }
        });
        (addr, seen)
    }

    const STREAMED: &str = r#"{"model":"m","stream":true,"messages":[]}"#;
    const WHOLE: &str = r#"{"model":"m","messages":[]}"#;

    #[tokio::test]
    async fn a_pooled_connection_after_a_stream_fails_the_next_request() {
        // The defect the proxy avoids, shown with a pooling client straight
        // at the backend: the request after a stream goes to the
        // connection the backend closes.
        let (backend, seen) = closing_backend().await;
        let client = http::client();
        let url = http::url(backend, "/v1/chat/completions");
        let mut failed = 0;
        for _ in 0..5 {
            let streamed = client.post(&url).body(STREAMED).send().await.unwrap();
            assert!(streamed.text().await.unwrap().ends_with("data: [DONE]\n\n"));
            let whole = client.post(&url).body(WHOLE).send().await;
            if whole.is_err() {
                failed += 1;
            }
        }
        assert!(failed > 0, "no request went to a closed connection");
        assert_eq!(seen.lost.load(Ordering::SeqCst), failed);
    }

    #[tokio::test]
    async fn mixed_traffic_through_the_proxy_never_meets_a_closed_connection() {
        let (backend, seen) = closing_backend().await;
        let (proxy, records) = measured();
        let (front, _front_stop) = serve(proxy.router()).await;
        proxy.add_route("m", ModelFacts::new(7u64, "m"), backend.port());
        proxy.publish_route("m", 7);
        let client = http::client();
        let url = http::url(front, "/v1/chat/completions");
        for pair in 0..20 {
            for body in [STREAMED, WHOLE] {
                let answer = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(answer.status(), 200, "pair {pair}");
                answer.bytes().await.unwrap();
            }
        }
        // Each request reached the backend once, none a closing connection.
        assert_eq!(seen.answered.load(Ordering::SeqCst), 40);
        assert_eq!(seen.lost.load(Ordering::SeqCst), 0);
        let records = records.lock().unwrap();
        assert_eq!(records.len(), 40);
        for (i, (instance, inference)) in records.iter().enumerate() {
            assert_eq!(*instance, 7);
            assert_eq!(inference.outcome, RequestOutcome::Ok);
            assert_eq!(inference.prefill, Some(survey::Throughput::new(8, 4.0)));
            assert_eq!(inference.decode, Some(survey::Throughput::new(1, 20.0)));
            assert_eq!(inference.output_tokens, Some(2));
            // The stream has no usage: the prompt is cache_n + prompt_n.
            assert_eq!(inference.prompt_tokens, Some(8));
            let streamed = i % 2 == 0;
            assert_eq!(inference.time_to_first_token.is_some(), streamed, "{i}");
        }
    }

    #[tokio::test]
    async fn only_requests_forwarded_to_a_backend_are_recorded() {
        let backend = Router::new()
            .route(
                "/v1/models",
                get(|| async { r#"{"object":"list","data":[]}"# }),
            )
            .route(
                "/v1/chat/completions",
                post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "busy") }),
            );
        let (backend, _backend_stop) = serve(backend).await;
        let (proxy, records) = measured();
        let (front, _front_stop) = serve(proxy.router()).await;
        let client = http::client();
        proxy.add_route("m", ModelFacts::new(1u64, "m"), backend.port());
        // A launch's check: not recorded.
        assert_eq!(proxy.check("m").await, Ok(()));
        proxy.publish_route("m", 1);
        // An error status passes through: backend_error.
        assert_eq!(chat(&client, front).await, (503, "busy".to_string()));
        // A model not served: nothing forwarded, nothing recorded.
        let unknown = client
            .post(http::url(front, "/v1/completions"))
            .body(r#"{"model":"nobody"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);
        // Nothing listens: backend_error.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        proxy.add_route("m", ModelFacts::new(2u64, "m"), dead_port);
        proxy.publish_route("m", 2);
        assert_eq!(chat(&client, front).await.0, 502);
        let records = records.lock().unwrap();
        let outcomes: Vec<(u64, RequestOutcome)> =
            records.iter().map(|(i, r)| (*i, r.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                (1, RequestOutcome::BackendError),
                (2, RequestOutcome::BackendError)
            ]
        );
        assert!(
            records
                .iter()
                .all(|(_, r)| *r == survey::Inference::new(r.outcome))
        );
    }
}
