//! The OTLP/HTTP endpoint: `POST /v1/metrics`, read as the OpenTelemetry
//! Collector's pipeline reads: authenticate → decode → validate → store.
//!
//! Each stage's error maps to one HTTP status, answered with a
//! `google.rpc.Status` body in the request's encoding, as the OTLP/HTTP
//! specification asks. A request is answered 200 only once its accepted
//! points are committed to disk. Nothing about the sender (address,
//! headers) is stored or logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message;
use tokio::sync::Semaphore;

use crate::auth::Tokens;
use crate::decode::{self, Compression, DecodeError, Encoding, MAX_BODY_BYTES};
use crate::otlp::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use crate::validate::{self, Validated};
use crate::writer::{Overloaded, Writer};

/// Seconds a sender is asked to wait (`Retry-After`) when the collector is busy.
pub const RETRY_AFTER_SECS: u64 = 2;

/// Bounds on what the endpoint holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request bodies being received at once (each at most 4 MiB); more
    /// are answered 503.
    pub max_bodies: usize,
    /// Bodies inflated and decoded at once (each at most 16 MiB inflated);
    /// more wait their turn.
    pub max_decoding: usize,
    /// Accepted points waiting for the writer; more are answered 503.
    pub max_queued_points: usize,
    /// Time a sender has for its request headers (and a TLS handshake),
    /// and an idle connection stays open.
    pub header_timeout: Duration,
    /// Time a sender has to deliver its body before a 408.
    pub body_timeout: Duration,
    /// Time a request waits for its commit before a 503.
    pub commit_timeout: Duration,
    /// Open connections; further connections wait to be accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bodies: 32,
            max_decoding: 2,
            max_queued_points: 100_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            commit_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// Running totals since start, for the collector's own log.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    unavailable: AtomicU64,
}

/// What the endpoint has done since it started ([`Server::totals`](crate::Server::totals)).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Export requests answered.
    pub requests: u64,
    /// Data points committed.
    pub accepted: u64,
    /// Data points rejected (partial success).
    pub rejected: u64,
    /// Requests answered 503 (busy, or storage failing).
    pub unavailable: u64,
}

impl Counters {
    /// The totals so far.
    pub fn totals(&self) -> Totals {
        Totals {
            requests: self.requests.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
        }
    }
}

/// The endpoint's shared state.
pub struct Ingest {
    tokens: Tokens,
    retention: Duration,
    writer: Writer,
    bodies: Semaphore,
    decoding: Semaphore,
    limits: Limits,
    /// Running totals.
    pub counters: Counters,
}

impl Ingest {
    /// The endpoint, storing through `writer`, which keeps raw points for
    /// `retention`.
    pub fn new(tokens: Tokens, writer: Writer, retention: Duration, limits: Limits) -> Ingest {
        Ingest {
            tokens,
            retention,
            writer,
            bodies: Semaphore::new(limits.max_bodies.max(1)),
            decoding: Semaphore::new(limits.max_decoding.max(1)),
            limits,
            counters: Counters::default(),
        }
    }

    /// Stops taking requests' points and commits what is queued.
    pub fn close(self) {
        self.writer.close();
    }
}

/// The routes: `POST /v1/metrics`; 405 for its other methods, 404 elsewhere.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route(
            "/v1/metrics",
            post(export).fallback(|| async {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, "POST")],
                    "only POST is allowed on /v1/metrics\n",
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: survey-collector serves POST /v1/metrics only\n",
            )
        })
        .with_state(ingest)
}

/// Why an export request was not taken; each maps to one status.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the request body could not be read")]
    BodyRead,
    #[error("the collector is busy; retry later")]
    Busy,
    #[error("the collector cannot store data right now; retry later")]
    Storage,
}

impl ExportError {
    fn status(&self) -> StatusCode {
        match self {
            ExportError::Unauthorized => StatusCode::UNAUTHORIZED,
            ExportError::Decode(e) => e.status(),
            ExportError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ExportError::BodyRead => StatusCode::BAD_REQUEST,
            ExportError::Busy | ExportError::Storage => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code the `google.rpc.Status` body carries.
    fn grpc_code(&self) -> i32 {
        match self.status() {
            StatusCode::UNAUTHORIZED => 16,
            StatusCode::PAYLOAD_TOO_LARGE => 8,
            StatusCode::REQUEST_TIMEOUT => 4,
            StatusCode::SERVICE_UNAVAILABLE => 14,
            _ => 3,
        }
    }

    fn into_response(self, encoding: Encoding) -> Response {
        let status = self.status();
        let rpc = RpcStatus {
            code: self.grpc_code(),
            message: self.to_string(),
        };
        let body = match encoding {
            Encoding::Protobuf => rpc.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&serde_json::json!({
                "code": rpc.code,
                "message": rpc.message,
            }))
            .unwrap_or_default(),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        );
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error answers.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
}

async fn export(State(ingest): State<Arc<Ingest>>, request: Request) -> Response {
    let headers = request.headers();
    // Errors before the content type is known are answered in protobuf.
    let answer_in = header_str(headers, header::CONTENT_TYPE)
        .and_then(|ct| Encoding::from_content_type(Some(ct)).ok())
        .unwrap_or(Encoding::Protobuf);
    let result = take(&ingest, request).await;
    ingest.counters.requests.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(rejected) => success(answer_in, rejected),
        Err(error) => {
            if error.status() == StatusCode::SERVICE_UNAVAILABLE {
                ingest.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            error.into_response(answer_in)
        }
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Authenticates, decodes, validates and stores one request; returns the
/// rejected points.
async fn take(ingest: &Ingest, request: Request) -> Result<validate::Rejections, ExportError> {
    let (parts, body) = request.into_parts();
    if !ingest.tokens.allows(
        parts
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    ) {
        return Err(ExportError::Unauthorized);
    }
    let encoding = Encoding::from_content_type(header_str(&parts.headers, header::CONTENT_TYPE))?;
    let compression =
        Compression::from_content_encoding(header_str(&parts.headers, header::CONTENT_ENCODING))?;
    let announced =
        header_str(&parts.headers, header::CONTENT_LENGTH).and_then(|n| n.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(DecodeError::BodyTooLarge.into());
    }
    // Bound the memory held by bodies: refuse what does not fit at once,
    // and inflate and decode a few at a time.
    let body_slot = ingest.bodies.try_acquire().map_err(|_| ExportError::Busy)?;
    let bytes = read_body(body, ingest.limits.body_timeout).await?;
    let decoding = ingest
        .decoding
        .acquire()
        .await
        .map_err(|_| ExportError::Busy)?;
    let clock = validate::Clock {
        now: crate::now_nanos(),
        retention: i64::try_from(ingest.retention.as_nanos()).unwrap_or(i64::MAX),
    };
    let validated = tokio::task::spawn_blocking(move || {
        let request = decode::decode(&bytes, encoding, compression)?;
        Ok::<Validated, DecodeError>(validate::validate(&request, clock))
    })
    .await
    .map_err(|_| ExportError::BodyRead)??;
    drop(decoding);
    drop(body_slot);
    let rejected = validated.rejected.clone();
    let accepted = validated.points.len() as u64;
    ingest
        .counters
        .rejected
        .fetch_add(rejected.total(), Ordering::Relaxed);
    if accepted > 0 {
        let committed = ingest
            .writer
            .submit(validated)
            .map_err(|Overloaded| ExportError::Busy)?;
        match tokio::time::timeout(ingest.limits.commit_timeout, committed).await {
            Ok(Ok(true)) => {}
            _ => return Err(ExportError::Storage),
        }
        ingest
            .counters
            .accepted
            .fetch_add(accepted, Ordering::Relaxed);
    }
    Ok(rejected)
}

async fn read_body(body: Body, timeout: Duration) -> Result<axum::body::Bytes, ExportError> {
    let collected = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY_BYTES).collect())
        .await
        .map_err(|_| ExportError::BodyTimeout)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(DecodeError::BodyTooLarge.into())
        }
        Err(_) => Err(ExportError::BodyRead),
    }
}

fn success(encoding: Encoding, rejected: validate::Rejections) -> Response {
    let response = ExportMetricsServiceResponse {
        partial_success: (rejected.total() > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(rejected.total()).unwrap_or(i64::MAX),
            error_message: rejected.message(),
        }),
    };
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        // OTLP/JSON: `{}` for a full success, 64-bit integers as strings.
        Encoding::Json => serde_json::to_vec(&response).unwrap_or_default(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}
