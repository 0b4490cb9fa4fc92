//! `serve`: the listener, plain HTTP or TLS (rustls), and a clean stop, on
//! the workspace's serve loop ([`survey_serve`]).
//!
//! Connections are bounded in number; a sender gets
//! [`Limits::header_timeout`] to send its request headers and to finish a
//! TLS handshake, and an idle connection is closed after as long. An
//! accept error (out of file descriptors, say) backs off instead of
//! spinning. On stop, the listener closes, requests in flight finish, and
//! the queued points are committed before [`Server::shutdown`] returns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Tokens;
use crate::ingest::{self, Ingest, Limits, Totals};
use crate::store::{Store, StoreError};
use crate::writer::Writer;

/// How long a stop waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the collector logs its totals, when anything arrived.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The SQLite database file.
    pub db: PathBuf,
    /// Accepted bearer tokens (none: no token required).
    pub tokens: Tokens,
    /// Certificate chain and private key (PEM files) for HTTPS.
    pub tls: Option<TlsFiles>,
    /// How long raw points are kept.
    pub retention: Duration,
    /// Bounds on what is held at once.
    pub limits: Limits,
}

/// PEM files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS file could not be used.
    #[error("{flag} {}: {problem}", path.display())]
    Tls {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The writer thread could not start.
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}

/// A running collector.
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    ingest: std::sync::Weak<Ingest>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the database, binds the address and starts serving.
    pub async fn start(config: ServeConfig) -> Result<Server, ServeError> {
        let tls = match &config.tls {
            Some(files) => Some(tls_acceptor(files)?),
            None => None,
        };
        let store = Store::open(&config.db)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
        let writer = Writer::start(store, config.retention, config.limits.max_queued_points)
            .map_err(ServeError::Thread)?;
        let ingest = Arc::new(Ingest::new(
            config.tokens.clone(),
            writer,
            config.retention,
            config.limits,
        ));
        let (stop, stopped) = watch::channel(false);
        let is_tls = tls.is_some();
        tracing::info!(
            %addr,
            db = %config.db.display(),
            tls = is_tls,
            tokens = config.tokens.len(),
            retention_hours = config.retention.as_secs() / 3600,
            "survey-collector listening: POST {}://{addr}/v1/metrics",
            if is_tls { "https" } else { "http" },
        );
        let weak = Arc::downgrade(&ingest);
        let task = tokio::spawn(serve(listener, tls, ingest, config.limits, stopped));
        Ok(Server {
            addr,
            tls: is_tls,
            ingest: weak,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Export requests, points and 503 answers so far.
    pub fn totals(&self) -> Totals {
        self.ingest
            .upgrade()
            .map(|ingest| ingest.counters.totals())
            .unwrap_or_default()
    }

    /// The base URL senders use (`/v1/metrics` is appended by them).
    pub fn endpoint(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops listening, lets requests in flight finish (up to 10 s) and
    /// commits what is queued.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    let bad = |flag: &'static str, path: &Path, problem: String| ServeError::Tls {
        flag,
        path: path.to_path_buf(),
        problem,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad("--tls-cert", &files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("--tls-cert", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            "--tls-cert",
            &files.cert,
            "no CERTIFICATE in the file".to_string(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad("--tls-key", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("--tls-cert", &files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            bad(
                "--tls-key",
                &files.key,
                format!("does not fit the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ingest: Arc<Ingest>,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(ingest::router(ingest.clone()));
    let options = survey_serve::Options {
        header_timeout: limits.header_timeout,
        max_connections: Some(limits.max_connections),
        drain: DRAIN_TIMEOUT,
    };
    let shutdown = async move {
        let _ = stopped.changed().await;
    };
    let serving = async {
        match tls {
            None => survey_serve::serve(listener, options, shutdown, service).await,
            Some(tls) => survey_serve::serve_tls(listener, tls, options, shutdown, service).await,
        }
    };
    let mut logged = Totals::default();
    let logging = async {
        let mut tick = tokio::time::interval(LOG_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            logged = log_totals(&ingest, logged);
        }
    };
    tokio::select! {
        _ = serving => {}
        _ = logging => {}
    }
    log_totals(&ingest, logged);
    // Every connection is gone, so this is the last handle: commit what is
    // queued, off the async threads.
    if let Ok(ingest) = Arc::try_unwrap(ingest) {
        let _ = tokio::task::spawn_blocking(move || ingest.close()).await;
    }
}

fn log_totals(ingest: &Ingest, before: Totals) -> Totals {
    let now = ingest.counters.totals();
    if now != before {
        tracing::info!(
            requests = now.requests - before.requests,
            points_accepted = now.accepted - before.accepted,
            points_rejected = now.rejected - before.rejected,
            unavailable = now.unavailable - before.unavailable,
            "export requests since the last report"
        );
    }
    now
}
