//! The control API on a real HTTP stack: bounded bodies, malformed
//! requests answered 4xx with a JSON error, names percent-decoded, idle
//! connections closed, and the client's report of an unreachable node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mesh_llm::api;
use mesh_llm::backend::launch::PortPicker;
use mesh_llm::backend::local::Signaller;
use survey_test_support::mesh::*;
use survey_test_support::*;

async fn start(dir: &TestDir) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let node = library_node(dir, &binaries::standin(), PortPicker::os(), Signaller::os());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(api::serve(listener, node, Duration::from_secs(10), stopped));
    (addr, stop)
}

/// One raw HTTP/1.1 exchange: the status and the body.
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn post_models(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    let mut request = format!(
        "POST /models HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    exchange(addr, &request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_with_a_json_error() {
    let dir = TestDir::new("api-bad");
    let (addr, _stop) = start(&dir).await;
    tokio::task::spawn_blocking(move || {
        let (status, body) = post_models(addr, b"{not json");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("\"error\":\"bad load request"), "{body}");

        let (status, body) = post_models(addr, br#"{"model": 7}"#);
        assert_eq!(status, 400, "{body}");

        // Over the 1 MiB bound: refused before it is read.
        let big = vec![b' '; 2 << 20];
        let (status, _) = post_models(addr, &big);
        assert_eq!(status, 413);

        let (status, body) = exchange(
            addr,
            b"GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        assert_eq!((status, body.as_str()), (404, r#"{"error":"not found"}"#));

        let (status, _) = exchange(addr, b"NOT HTTP AT ALL\r\n\r\n");
        assert_eq!(status, 400);

        // A name with a space and a slash, percent-encoded as one segment.
        let (status, body) = exchange(
            addr,
            b"DELETE /models/a%20b%2Fc HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        assert_eq!(status, 404);
        assert!(body.contains("no loaded model named a b/c"), "{body}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed() {
    let dir = TestDir::new("api-idle");
    let (addr, _stop) = start(&dir).await;
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // Half a request line, then nothing.
        stream.write_all(b"GET /sta").unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(25),
            "the connection stayed open {waited:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reports_an_unreachable_node_with_its_cause() {
    // A port nothing listens on.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let error = api::Client::new(addr).status().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("cannot reach the node's control API"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}
