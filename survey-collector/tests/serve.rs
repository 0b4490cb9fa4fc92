//! `survey-collector serve` as a process and under pressure: an export
//! answered 200 survives `kill -9`; the log and the files name no sender;
//! a busy collector answers 503 with Retry-After, holds bounded memory, and
//! a real node's retry brings every count in; TLS; bad arguments.

mod node;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use prost::Message;
use serde_json::json;
use survey_collector::Limits;
use survey_collector::{ServeConfig, Server, TlsFiles};
use survey_schema as schema;
use survey_test_support::collector::*;
use survey_test_support::otlp::*;
use survey_test_support::*;

/// A child node's entry point, not a test: the tests that need a node
/// start this binary with `--include-ignored --exact node_child`.
#[test]
#[ignore = "a child node's entry point, started by the tests that need one"]
fn node_child() {
    node::run_child();
}

/// A `survey-collector serve` process on a free port; its log goes to
/// `log` and the address it listens on is read from it.
fn spawn_serve(
    dir: &TestDir,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, SocketAddr, std::path::PathBuf) {
    let log = dir.path().join("serve.log");
    let mut command = Command::new(binaries::survey_collector());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.db())
        .args(args)
        .env("SURVEY_COLLECTOR_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log_path = log.clone();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(&log_path).unwrap();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            use std::io::Write;
            let _ = writeln!(file, "{line}");
            if !sent
                && let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
            {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve prints its address");
    (child, addr, log)
}

fn launch_request(node: u32, model: &str, value: u64) -> Vec<u8> {
    request(
        &Node::new(node),
        vec![cumulative(
            schema::LAUNCH_TOTAL,
            model_attrs(model),
            at(DAY, 1),
            at(DAY, 2) + value,
            value,
        )],
    )
    .encode_to_vec()
}

async fn post_to(addr: SocketAddr, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let mut all = vec![("content-type", "application/x-protobuf")];
    all.extend_from_slice(headers);
    send(
        reqwest::Method::POST,
        &format!("http://{addr}/v1/metrics"),
        &all,
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_answered_200_survives_kill_9() {
    let dir = TestDir::new("kill9");
    let (mut child, addr, _) = spawn_serve(&dir, &[], &[]);
    for value in 1..=5 {
        let answer = post_to(addr, launch_request(1, "a", value), &[]).await;
        assert_eq!(answer.status, 200);
    }
    let answer = post_to(addr, launch_request(2, "b", 1), &[]).await;
    assert_eq!(answer.status, 200);
    // Killed right after the last answer: no chance to flush anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let report = report(&dir, Default::default());
    assert_eq!(
        report["most_launched"],
        json!([{"model": "a", "launches": 5, "nodes": 1}, {"model": "b", "launches": 1, "nodes": 1}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn neither_the_log_nor_the_files_name_a_sender() {
    let dir = TestDir::new("privacy");
    let (child, addr, log) =
        spawn_serve(&dir, &[], &[("SURVEY_COLLECTOR_TOKENS", "CANARY-TOKEN-1")]);
    // A request from a known client port, with identifying headers, and
    // values that are rejected.
    let mut bad = model_attrs("a");
    bad[0] = kv_str("mesh_llm.model", "/home/CANARY-USER/secret.gguf");
    bad.push(kv_str("user.name", "CANARY-NAME"));
    let body = request(
        &Node::new(1),
        vec![
            cumulative(
                schema::LAUNCH_TOTAL,
                model_attrs("ok-model"),
                at(DAY, 1),
                at(DAY, 2),
                1,
            ),
            cumulative(schema::LAUNCH_TOTAL, bad, at(DAY, 1), at(DAY, 2), 1),
        ],
    )
    .encode_to_vec();
    let client = client();
    for (auth, expected) in [("Bearer CANARY-TOKEN-1", 200), ("Bearer CANARY-WRONG", 401)] {
        let response = client
            .post(format!("http://{addr}/v1/metrics"))
            .header("content-type", "application/x-protobuf")
            .header("authorization", auth)
            .header("user-agent", "CANARY-AGENT")
            .header("x-forwarded-for", "198.51.100.77")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{auth}");
    }
    // A raw request with more identifying headers.
    let (status, _) = raw_status(
        addr,
        &format!(
            "POST /v1/metrics HTTP/1.1\r\nhost: CANARY-HOST\r\nauthorization: Bearer CANARY-TOKEN-1\r\n\
             content-type: application/x-protobuf\r\ncontent-length: {}\r\nx-real-ip: 198.51.100.78",
            body.len()
        ),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    // SIGTERM: a clean stop.
    unsafe_sigterm(&child);
    let status = wait_with_timeout(child, Duration::from_secs(20));
    assert_eq!(status, Some(0), "serve stops cleanly on SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("points_accepted=2"), "{text}");
    assert!(text.contains("points_rejected=2"), "{text}");
    let files = dir.all_bytes();
    for canary in ["CANARY", "198.51.100", "user.name", "secret.gguf"] {
        assert!(!text.contains(canary), "{canary} in the log:\n{text}");
        assert!(
            !files.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{canary} on disk"
        );
    }
    // No client address in the log: the only address it names is its own.
    for line in text.lines() {
        for word in line.split(|c: char| c.is_whitespace() || c == '=' || c == '/') {
            if word.starts_with("127.0.0.1:") {
                assert_eq!(word, addr.to_string(), "{line}");
            }
        }
    }
    let report = report(&dir, Default::default());
    assert_eq!(
        report["most_launched"],
        json!([{"model": "ok-model", "launches": 1, "nodes": 1}])
    );
}

fn unsafe_sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_with_timeout(mut child: Child, timeout: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Holds SQLite's write lock on `db` until dropped, as a stuck disk would.
fn lock_writes(db: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_503_with_retry_after() {
    let dir = TestDir::new("busy");
    let limits = Limits {
        max_queued_points: 10_000,
        ..Limits::default()
    };
    let server = collector_with(&dir, Default::default(), limits).await;
    let addr = server.local_addr();
    let lock = lock_writes(&dir.db());
    // One point waits for the writer, which waits for the lock.
    let waiting = tokio::spawn(post_to(addr, launch_request(1, "a", 1), &[]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 10000 more points do not fit the queue: 503 at once.
    let mut big = request(&Node::new(2), Vec::new());
    let metrics = &mut big.resource_metrics[0].scope_metrics[0].metrics;
    for i in 0..10_000 {
        let mut attrs = model_attrs(&format!("m{i}"));
        attrs.truncate(1);
        metrics.push(cumulative(
            schema::LAUNCH_TOTAL,
            attrs,
            at(DAY, 1),
            at(DAY, 2),
            1,
        ));
    }
    let started = std::time::Instant::now();
    let answer = post_to(addr, big.encode_to_vec(), &[]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("2"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused without waiting for the writer"
    );
    drop(lock);
    assert_eq!(waiting.await.unwrap().status, 200);
    assert_eq!(server.totals().unavailable, 1);
    server.shutdown().await;
    let report = report(&dir, Default::default());
    assert_eq!(
        report["most_launched"],
        json!([{"model": "a", "launches": 1, "nodes": 1}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_in_flight_are_bounded() {
    let dir = TestDir::new("inflight");
    let limits = Limits {
        max_bodies: 2,
        body_timeout: Duration::from_secs(3),
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = collector_with(&dir, Default::default(), limits).await;
    let addr = server.local_addr();
    // Two senders announce a body and stall: they hold the two slots.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST /v1/metrics HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
                  content-length: 1000\r\n\r\npartial",
            )
            .await
            .unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third is refused at once instead of buffered.
    let answer = post_to(addr, launch_request(1, "a", 1), &[]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("2"));
    // The stalled ones time out (408) and free their slots.
    for mut stream in stalled {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
    }
    let answer = post_to(addr, launch_request(1, "a", 1), &[]).await;
    assert_eq!(answer.status, 200);
    // A connection that sends nothing is closed after the header timeout.
    {
        use tokio::io::AsyncReadExt;
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
            "idle connection kept open"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_node_retries_through_an_outage_and_nothing_is_lost() {
    let dir = TestDir::new("outage");
    let server = collector(&dir).await;
    // The disk is stuck: the first attempt waits 5 s for the lock, is
    // answered 503 with Retry-After, and the exporter tries again.
    let lock = lock_writes(&dir.db());
    let child = node::spawn_with("node_child", "cpu", &server.endpoint(), "timeout_secs = 25");
    // The disk stays stuck until the node has been answered 503.
    let started = std::time::Instant::now();
    while server.totals().unavailable == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "no 503 came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(lock);
    node::finished(child, "the node (its exports did not get through)").await;
    assert_eq!(server.totals().unavailable, 1, "{:?}", server.totals());
    let report = report(&dir, Default::default());
    assert_eq!(report["most_launched"], node::cpu_most_launched());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_certificate_the_node_trusts() {
    let dir = TestDir::new("tls");
    let files = tls::Pki::new("collector").write(&dir);
    let ca_pem = files.ca;
    let (cert_pem, key_pem) = (files.cert, files.key);
    let server = Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.db(),
        tokens: Default::default(),
        tls: Some(TlsFiles {
            cert: cert_pem,
            key: key_pem,
        }),
        retention: Duration::from_secs(3600),
        limits: Limits::default(),
    })
    .await
    .unwrap();
    assert!(server.endpoint().starts_with("https://"));
    // Plain HTTP to the TLS port gets no answer and stores nothing.
    let (status, _) = raw_status(
        server.local_addr(),
        "POST /v1/metrics HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0",
        b"",
    )
    .await;
    assert_eq!(status, 0);
    // A real node that trusts the CA exports over HTTPS.
    let child = child::this_test("node_child")
        .env(node::SCRIPT_ENV, "cpu")
        .env(node::ENDPOINT_ENV, server.endpoint())
        .env("SSL_CERT_FILE", &ca_pem)
        .spawn()
        .unwrap();
    node::finished(child, "the node").await;
    let report = report(&dir, Default::default());
    assert_eq!(
        report["most_launched"],
        node::cpu_most_launched(),
        "{report:#}"
    );
    server.shutdown().await;
}

/// Arguments, environment, expected exit code, what stderr must say.
type Case<'a> = (
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    Option<i32>,
    &'a [&'a str],
);

#[test]
fn bad_arguments_name_what_is_wrong() {
    let dir = TestDir::new("args");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(binaries::survey_collector());
        command
            .arg("serve")
            .args(args)
            .env_remove("SURVEY_COLLECTOR_TOKENS");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (wait_with_timeout(child, Duration::from_secs(20)), stderr)
    };
    let db = dir.db();
    let db = db.to_str().unwrap();
    let cases: [Case; 7] = [
        (
            &["--tls-cert", "c.pem", "--db", db],
            &[],
            Some(2),
            &["--tls-key"],
        ),
        (
            &["--listen", "localhost", "--db", db],
            &[],
            Some(2),
            &["--listen", "localhost"],
        ),
        (
            &["--retention-hours", "0", "--db", db],
            &[],
            Some(2),
            &["--retention-hours"],
        ),
        (
            &["--token", "two words", "--db", db],
            &[],
            Some(2),
            &["--token", "no spaces"],
        ),
        (
            &["--db", db],
            &[("SURVEY_COLLECTOR_TOKENS", "ok,bad token")],
            Some(2),
            &["SURVEY_COLLECTOR_TOKENS"],
        ),
        (
            &[
                "--tls-cert",
                "/nonexistent/c.pem",
                "--tls-key",
                "/nonexistent/k.pem",
                "--db",
                db,
            ],
            &[],
            Some(1),
            &["--tls-cert /nonexistent/c.pem"],
        ),
        (
            &["--listen", "127.0.0.1:0", "--db", "/nonexistent/dir/s.db"],
            &[],
            Some(1),
            &["/nonexistent/dir/s.db"],
        ),
    ];
    for (args, env, code, needles) in cases {
        let (status, stderr) = run(args, env);
        assert_eq!(status, code, "{args:?}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle:?} not in {stderr}"
            );
        }
    }
}
