//! The workspace's one HTTP/1.1 serve loop, on hyper: `survey-collector
//! serve`, the mesh-llm node's control and inference APIs, and the test
//! servers all accept and serve connections here.
//!
//! - **Accept**: an accept error (running out of file descriptors, say) is
//!   logged and retried after a pause that starts at [`FIRST_PAUSE`] and
//!   doubles up to [`MAX_PAUSE`], never in a busy loop. The peer's address
//!   is never looked at.
//! - **Bounds**: at most [`Options::max_connections`] connections at once
//!   (the rest wait in the listen backlog); a connection gets
//!   [`Options::header_timeout`] to finish a TLS handshake and to send a
//!   request's headers, and is closed after as long idle; headers larger
//!   than [`MAX_HEADER_BYTES`] are refused by hyper.
//! - **Stop**: once the `shutdown` future resolves the listener closes, idle
//!   connections close, the requests in flight are answered, and the
//!   connections still open [`Options::drain`] later are closed. The serve
//!   function returns only when every connection task is gone, so whatever
//!   the service held is released by then.
//!
//! [`serve`] and [`serve_tls`] (feature `tls`) serve one hyper
//! [`Service`] on every connection; [`serve_with`] and [`connection`] are the two halves
//! of them, for a server that wraps its connections (a stream that closes
//! in its own way, a service made per connection).
//!
//! ```no_run
//! # async fn run(service: impl survey_serve::Service) {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let (stop, mut stopped) = tokio::sync::watch::channel(false);
//! let shutdown = async move {
//!     let _ = stopped.wait_for(|stop| *stop).await;
//! };
//! tokio::spawn(survey_serve::serve(
//!     listener,
//!     survey_serve::Options::default(),
//!     shutdown,
//!     service,
//! ));
//! // ...
//! let _ = stop.send(true);
//! # }
//! ```

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// The pause after a first accept error.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between accept errors.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The largest read buffer of a connection, and so the largest request
/// head (request line and headers) a server takes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The bounds of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How long a connection may take to finish its TLS handshake and to
    /// send a request's headers, and stay idle between requests.
    pub header_timeout: Duration,
    /// Most connections served at once (`None`: no bound); further ones
    /// wait in the listen backlog until one closes.
    pub max_connections: Option<usize>,
    /// How long requests in flight may take to finish after the stop;
    /// connections still open then are closed.
    pub drain: Duration,
}

impl Default for Options {
    /// Ten seconds for headers, no bound on connections, ten seconds to
    /// drain.
    fn default() -> Options {
        Options {
            header_timeout: Duration::from_secs(10),
            max_connections: None,
            drain: Duration::from_secs(10),
        }
    }
}

/// The stop of a server, as its connections see it.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Whether the server has been told to stop.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the server has been told to stop.
    pub async fn stopped(&mut self) {
        // An error means the server is gone: stopped too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// The errors a [`Service`] and its bodies may fail with.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A hyper service the loop can run on its connections, a clone per
/// connection: an axum router through
/// `hyper_util::service::TowerToHyperService`, or a
/// `hyper::service::service_fn`. Implemented for every such type.
pub trait Service:
    HttpService<
        Incoming,
        Future: Send + 'static,
        Error: Into<BoxError>,
        ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Service for S
where
    S: HttpService<Incoming> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
}

/// Serves `service` on every connection `listener` accepts, in plain
/// HTTP/1.1, until `shutdown` resolves; returns once the requests in
/// flight are answered or `options.drain` has passed.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
    service: impl Service,
) {
    serve_on(listener, options, shutdown, service, |stream| {
        std::future::ready(Some(stream))
    })
    .await
}

/// [`serve`] over TLS: each connection's handshake with `tls` must finish
/// within `options.header_timeout`; a failed one closes the connection
/// without a word (what it could say would only identify the client).
#[cfg(feature = "tls")]
pub async fn serve_tls(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    options: Options,
    shutdown: impl Future<Output = ()>,
    service: impl Service,
) {
    let header_timeout = options.header_timeout;
    serve_on(listener, options, shutdown, service, move |stream| {
        let handshake = tokio::time::timeout(header_timeout, tls.accept(stream));
        async move { handshake.await.ok()?.ok() }
    })
    .await
}

/// [`serve_with`], each connection first through `handshake` (`None`:
/// closed unserved), then served by [`connection`].
async fn serve_on<H, F, I>(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
    service: impl Service,
    mut handshake: H,
) where
    H: FnMut(TcpStream) -> F,
    F: Future<Output = Option<I>> + Send + 'static,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = options.header_timeout;
    serve_with(listener, options, shutdown, move |stream, stop| {
        let handshake = handshake(stream);
        let service = service.clone();
        async move {
            if let Some(io) = handshake.await {
                connection(io, service, header_timeout, stop, std::future::pending()).await;
            }
        }
    })
    .await
}

/// The accept loop of [`serve`]: each connection `listener` accepts (with
/// `TCP_NODELAY` set) is handed to `handle`, with the server's [`Stop`],
/// and the future it returns is run as a task of its own, until
/// `shutdown` resolves. Then the listener closes, the connections' [`Stop`]
/// turns, and the call returns once every task has ended, or after
/// `options.drain` once the tasks left are aborted.
pub async fn serve_with<F, C>(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
    mut handle: F,
) where
    F: FnMut(TcpStream, Stop) -> C,
    C: Future<Output = ()> + Send + 'static,
{
    let (stopping, stop) = watch::channel(false);
    let stop = Stop(stop);
    let slots = options
        .max_connections
        .map(|most| Arc::new(Semaphore::new(most.clamp(1, Semaphore::MAX_PERMITS))));
    let mut connections = JoinSet::new();
    let mut pause = FIRST_PAUSE;
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = match &slots {
            None => None,
            Some(slots) => tokio::select! {
                _ = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => Some(slot),
                    Err(_) => break,
                },
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            // The peer's address is deliberately dropped here.
            Ok((stream, _)) => {
                pause = FIRST_PAUSE;
                stream
            }
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection; retrying in {pause:?}");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let served = handle(stream, stop.clone());
        connections.spawn(async move {
            served.await;
            drop(slot);
        });
    }
    drop(listener);
    drop(handle);
    let _ = stopping.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(options.drain, drained).await.is_err() {
        tracing::warn!(
            "closing {} connections still open {:?} after the stop",
            connections.len(),
            options.drain
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Serves one connection with `service` until the client closes it, or
/// the server stops, or `close` resolves: for both, the answer in progress
/// is finished first and the connection is closed after it (headers
/// already written stay as they are). A client gets `header_timeout` to
/// send each request's headers.
pub async fn connection<I>(
    io: I,
    service: impl Service,
    header_timeout: Duration,
    mut stop: Stop,
    close: impl Future<Output = ()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    if stop.is_stopped() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.stopped() => {}
        _ = close => {}
    }
    // Keep-alive off: hyper finishes the answer in progress, then closes.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Answer = hyper::Response<http_body_util::Full<hyper::body::Bytes>>;

    /// Answers `hello` after `delay`.
    fn hello(delay: Duration) -> impl Service {
        hyper::service::service_fn(move |_request| async move {
            tokio::time::sleep(delay).await;
            Ok::<Answer, Infallible>(hyper::Response::new("hello".into()))
        })
    }

    async fn exchange(addr: std::net::SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer
    }

    /// A server answering `hello` after `delay` on a free port of
    /// 127.0.0.1; it stops when dropped.
    struct Running {
        addr: std::net::SocketAddr,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(options: Options, delay: Duration) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, mut stopped) = watch::channel(false);
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let task = tokio::spawn(serve(listener, options, shutdown, hello(delay)));
        Running { addr, stop, task }
    }

    impl Running {
        /// Stops it, and waits for it to return (at most 5 s).
        async fn stop(self) {
            let _ = self.stop.send(true);
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("the server returns")
                .expect("no panic");
        }
    }

    #[tokio::test]
    async fn answers_and_stops_after_the_request_in_flight() {
        let server = start(Options::default(), Duration::from_millis(300)).await;
        let addr = server.addr;
        let first = exchange(addr).await;
        assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
        assert!(first.ends_with("hello"), "{first}");

        let in_flight = tokio::spawn(exchange(addr));
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.stop().await;
        let answer = in_flight.await.expect("client");
        assert!(
            answer.ends_with("hello"),
            "answered after the stop: {answer}"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the port is closed"
        );
    }

    #[tokio::test]
    async fn a_slow_answer_is_cut_off_at_the_drain() {
        let options = Options {
            drain: Duration::from_millis(100),
            ..Options::default()
        };
        let server = start(options, Duration::from_secs(60)).await;
        let in_flight = tokio::spawn(exchange(server.addr));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        server.stop().await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(in_flight.await.expect("client"), "", "closed unanswered");
    }

    #[tokio::test]
    async fn connections_beyond_the_bound_wait() {
        let options = Options {
            max_connections: Some(1),
            ..Options::default()
        };
        let server = start(options, Duration::ZERO).await;
        // An idle connection holds the one slot.
        let idle = TcpStream::connect(server.addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = tokio::spawn(exchange(server.addr));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "served beyond the bound");
        drop(idle);
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("served once the slot is free")
            .expect("client");
        assert!(answer.ends_with("hello"), "{answer}");
        server.stop().await;
    }

    #[tokio::test]
    async fn headers_not_sent_in_time_close_the_connection() {
        let options = Options {
            header_timeout: Duration::from_millis(200),
            ..Options::default()
        };
        let server = start(options, Duration::ZERO).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest));
        assert!(closed.await.is_ok(), "closed within the timeout");
        server.stop().await;
    }
}
