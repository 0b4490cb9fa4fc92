//! Serving: the node's OpenAI-compatible API routes requests by model to
//! the right backend, streams answers through, checks each launch's route
//! (a failed check is a launch failed with `backend_proxy_failed`), keeps
//! prompts out of its log and its exports, and gives requests in flight
//! the unload grace at SIGTERM before cutting them.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use survey::schema;
use survey_test_support::mesh::*;
use survey_test_support::*;

const WAIT: Duration = Duration::from_secs(20);

/// The stand-in's fixed sentence, as `count` words.
fn sentence(count: usize) -> String {
    let words = llama_server_standin::WORDS;
    (0..count)
        .map(|i| words[i % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn client() -> reqwest::blocking::Client {
    http_client()
}

fn get_models(http: SocketAddr) -> Vec<String> {
    let response = client()
        .get(format!("http://{http}/v1/models"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let list: serde_json::Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert_eq!(list["object"], "list");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// The chunks of a streamed answer, decoded, after checking that it ends
/// with `[DONE]`.
fn sse_chunks(body: &str) -> Vec<serde_json::Value> {
    let events = sse_events(body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// The text of a streamed chat answer's chunks.
fn chat_text(chunks: &[serde_json::Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// A node serving one model, `name`, written from `file`, exporting to
/// `receiver` (with `telemetry_extra` in its `[telemetry]` table).
fn one_model_node(
    dir: &TestDir,
    receiver: &Receiver,
    name: &str,
    file: ModelFile,
    telemetry_extra: &str,
    options: NodeOptions,
) -> Node {
    let model = write_model(dir, &format!("m/{name}.gguf"), file);
    let config = format!(
        "[[models]]\nmodel = \"{}\"\n\n{}",
        model.display(),
        telemetry_for(receiver, telemetry_extra)
    );
    let node = Node::start(dir, &config, options);
    node.wait_started();
    node
}

fn two_model_node(dir: &TestDir, receiver: &Receiver) -> Node {
    let mut config = String::new();
    for name in ["alpha", "beta"] {
        let model = write_model(dir, &format!("m/{name}.gguf"), ModelFile::default());
        config.push_str(&format!("[[models]]\nmodel = \"{}\"\n\n", model.display()));
    }
    config.push_str(&telemetry_for(receiver, ""));
    let node = Node::start(dir, &config, NodeOptions::default());
    node.wait_started();
    node
}

#[test]
fn requests_are_routed_by_model_and_answers_pass_through_whole_or_streamed() {
    let dir = TestDir::new("serve-route");
    let receiver = Receiver::start();
    let node = two_model_node(&dir, &receiver);
    assert_eq!(get_models(node.http), ["alpha", "beta"]);
    let (alpha, beta) = (port_of(&node, "alpha"), port_of(&node, "beta"));

    // A whole chat answer, from alpha's backend.
    let (status, content_type, body) = post(
        node.http,
        "/v1/chat/completions",
        r#"{"model":"alpha","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#,
    );
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["system_fingerprint"], format!("b0-standin-{alpha}"));
    assert_eq!(answer["choices"][0]["message"]["content"], sentence(5));
    assert_eq!(answer["choices"][0]["finish_reason"], "length");

    // A streamed text completion, from beta's backend, event by event.
    let (status, content_type, body) = post(
        node.http,
        "/v1/completions",
        r#"{"model":"beta","prompt":"hi","max_tokens":12,"stream":true}"#,
    );
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    let events = sse_events(&body);
    assert_eq!(events.len(), 12 + 2, "{body}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let mut text = String::new();
    for event in &events[..13] {
        let chunk: serde_json::Value = serde_json::from_str(event).unwrap();
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(chunk["system_fingerprint"], format!("b0-standin-{beta}"));
        text.push_str(chunk["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(text, sentence(12));

    // A streamed chat answer: role first, then the words, then stop.
    let (_, _, body) = post(
        node.http,
        "/v1/chat/completions",
        r#"{"model":"alpha","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    );
    let chunks = sse_chunks(&body);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chat_text(&chunks), sentence(16));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // Unknown model: 404 with an OpenAI-style error.
    let (status, _, body) = post(
        node.http,
        "/v1/chat/completions",
        r#"{"model":"gamma","messages":[]}"#,
    );
    assert_eq!(status, 404);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(error["error"]["param"], "model");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gamma")
    );

    // Malformed bodies: 400, and nothing of the body in the answer.
    for bad in ["{not json SECRET", r#"{"messages":[]}"#, r#"{"model":7}"#] {
        let (status, _, body) = post(node.http, "/v1/completions", bad);
        assert_eq!(status, 400, "{bad}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(!body.contains("SECRET"));
    }
    let (status, _, _) = post(node.http, "/v1/embeddings", "{}");
    assert_eq!(status, 404);
    // A body over 32 MiB: 413; a GET where a POST goes: 405; both
    // OpenAI-style.
    let huge = format!(r#"{{"model":"alpha","prompt":"{}"}}"#, "x".repeat(33 << 20));
    let (status, _, body) = post(node.http, "/v1/completions", &huge);
    assert_eq!(status, 413);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let response = client()
        .get(format!("http://{}/v1/chat/completions", node.http))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let error: serde_json::Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");

    // Unloaded: gone from the list and from routing; beta still served.
    node.unload("alpha");
    assert_eq!(get_models(node.http), ["beta"]);
    let (status, _, _) = post(node.http, "/v1/completions", r#"{"model":"alpha"}"#);
    assert_eq!(status, 404);
    // A backend that dies leaves the routes too.
    let beta_pid = node.status().models[0].pid;
    signal(beta_pid, libc::SIGKILL);
    node.wait_status(WAIT, |s| s.models.is_empty());
    assert!(get_models(node.http).is_empty());
    let (status, _, _) = post(node.http, "/v1/completions", r#"{"model":"beta"}"#);
    assert_eq!(status, 404);
}

#[test]
fn a_backend_unreachable_through_the_proxy_fails_its_launch_as_backend_proxy_failed() {
    let dir = TestDir::new("serve-proxy-failed");
    let receiver = Receiver::start();
    let broken = write_model(
        &dir,
        "m/unlisted.gguf",
        ModelFile {
            mode: Some("models-fail"),
            ..ModelFile::default()
        },
    );
    let node = Node::start(&dir, &telemetry_for(&receiver, ""), NodeOptions::default());
    node.wait_started();
    let said = node.load_fails(&broken, &[]);
    assert!(
        said.contains(
            "unreachable through the proxy: GET /v1/models answered 500 Internal Server Error; see "
        ),
        "{said}"
    );
    // Not listed, not routed, not running.
    assert!(node.status().models.is_empty());
    assert!(get_models(node.http).is_empty());
    assert!(processes_mentioning("unlisted.gguf").is_empty());
    let points = receiver.wait_for_export(WAIT, |p| total(p, schema::LAUNCH_FAILURE_TOTAL) == 1.0);
    survey_test_support::host::assert_one_failed_launch(&points, "backend_proxy_failed");
}

#[test]
fn prompts_and_completions_reach_neither_the_log_nor_the_export() {
    const CANARY: &str = "PROMPTCANARY7f3a";
    let dir = TestDir::new("serve-canary");
    let receiver = Receiver::start();
    let node = one_model_node(
        &dir,
        &receiver,
        "canary-model",
        ModelFile::default(),
        "compression = \"none\"",
        NodeOptions {
            env: &[("RUST_LOG", "trace")],
            ..NodeOptions::default()
        },
    );
    let requests = [
        (
            "/v1/chat/completions",
            format!(
                r#"{{"model":"canary-model","messages":[{{"role":"user","content":"{CANARY} a"}}]}}"#
            ),
        ),
        (
            "/v1/chat/completions",
            format!(
                r#"{{"model":"canary-model","stream":true,"messages":[{{"role":"user","content":"{CANARY} b"}}]}}"#
            ),
        ),
        (
            "/v1/completions",
            format!(r#"{{"model":"canary-model","prompt":"{CANARY} c"}}"#),
        ),
        (
            "/v1/completions",
            format!(r#"{{"model":"nobody","prompt":"{CANARY} d"}}"#),
        ),
    ];
    for (path, body) in &requests[..3] {
        let (status, _, answer) = post(node.http, path, body);
        assert_eq!(status, 200, "{answer}");
        // The whole body reached the backend: its size is what the
        // stand-in counts as the prompt.
        if !answer.starts_with("data: ") {
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer["usage"]["prompt_tokens"], body.len() / 4);
        }
    }
    let (status, _, _) = post(node.http, requests[3].0, &requests[3].1);
    assert_eq!(status, 404);
    // A model name that is itself the canary: refused, not logged.
    let (status, _, _) = post(
        node.http,
        "/v1/completions",
        &format!(r#"{{"model":"{CANARY}","prompt":"x"}}"#),
    );
    assert_eq!(status, 404);
    // Malformed, and a model that is not a string.
    let (status, _, _) = post(node.http, "/v1/completions", &format!("{{{CANARY}"));
    assert_eq!(status, 400);
    let (status, _, _) = post(
        node.http,
        "/v1/completions",
        &format!(r#"{{"model":7,"prompt":"{CANARY}"}}"#),
    );
    assert_eq!(status, 400);
    receiver.wait_for_export(WAIT, |p| total(p, schema::LAUNCH_SUCCESS_TOTAL) == 1.0);
    let (_, _, log) = node.terminate();
    assert!(
        log.contains("proxied"),
        "the trace log shows the requests: {log}"
    );
    assert!(!log.contains(CANARY), "prompt in the node's log: {log}");
    let exports = receiver.requests();
    assert!(!exports.is_empty());
    for export in &exports {
        assert!(export.decoded.is_some());
        let raw = String::from_utf8_lossy(&export.raw_body);
        assert!(!raw.contains(CANARY), "prompt exported");
        assert!(!raw.contains("stand-in answers"), "completion exported");
    }
}

/// A streamed chat request body of `words` words for `model`.
fn streamed_chat(model: &str, words: usize) -> String {
    format!(
        r#"{{"model":"{model}","stream":true,"max_tokens":{words},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

/// A node serving `name`, a model whose backend streams a word per 100 ms.
fn slow_model_node(dir: &TestDir, receiver: &Receiver, name: &str, extra_args: &[&str]) -> Node {
    let file = ModelFile {
        token_ms: Some(100),
        ..ModelFile::default()
    };
    let options = NodeOptions {
        extra_args,
        ..NodeOptions::default()
    };
    one_model_node(dir, receiver, name, file, "", options)
}

#[test]
fn sigterm_lets_a_stream_in_flight_finish_within_the_unload_grace() {
    let dir = TestDir::new("serve-grace");
    let receiver = Receiver::start();
    let node = slow_model_node(
        &dir,
        &receiver,
        "finishes-talking",
        &["--unload-grace-secs", "5", "--shutdown-timeout-secs", "15"],
    );
    // 15 words at 100 ms: 1.5 s of answer, inside the grace.
    let (first, reader) =
        stream_in_background(node.http, streamed_chat("finishes-talking", 15), false);
    first.recv_timeout(WAIT).expect("the stream began");
    node.stop();
    let (body, clean) = reader.join().unwrap();
    assert!(clean, "the stream was cut: {body}");
    assert_eq!(chat_text(&sse_chunks(&body)), sentence(15));
    // Then the backend was unloaded, and that was recorded.
    assert!(processes_mentioning("finishes-talking.gguf").is_empty());
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 1.0);
}

#[test]
fn sigterm_cuts_a_stream_that_outlasts_the_unload_grace_and_keeps_the_bound() {
    let dir = TestDir::new("serve-cut");
    let receiver = Receiver::start();
    let node = slow_model_node(
        &dir,
        &receiver,
        "cut-off-talker",
        &["--unload-grace-secs", "1", "--shutdown-timeout-secs", "6"],
    );
    // 300 words at 100 ms: 30 s of answer, far past the grace.
    let (first, reader) =
        stream_in_background(node.http, streamed_chat("cut-off-talker", 300), false);
    first.recv_timeout(WAIT).expect("the stream began");
    let start = Instant::now();
    let (took, log) = node.stop();
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    let (body, _) = reader.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(!body.contains("[DONE]"), "the stream was not cut");
    assert!(log.contains("cutting 1 inference requests"), "{log}");
    assert!(
        processes_mentioning("cut-off-talker.gguf").is_empty(),
        "{log}"
    );
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 1.0);
}

#[test]
fn a_backend_silent_past_the_inference_timeout_is_cut() {
    let dir = TestDir::new("serve-idle");
    let receiver = Receiver::start();
    let node = one_model_node(
        &dir,
        &receiver,
        "silent",
        ModelFile {
            token_ms: Some(3_000),
            ..ModelFile::default()
        },
        "",
        NodeOptions {
            extra_args: &["--inference-timeout-secs", "0.5"],
            ..NodeOptions::default()
        },
    );
    // A whole answer that takes 6 s to begin: 504.
    let start = Instant::now();
    let (status, _, body) = post(
        node.http,
        "/v1/completions",
        r#"{"model":"silent","prompt":"hi","max_tokens":2}"#,
    );
    assert_eq!(status, 504, "{body}");
    assert!(start.elapsed() < Duration::from_secs(3));
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["type"], "server_error");
    // A stream whose first word takes 3 s: begun, then cut.
    let start = Instant::now();
    let mut response = client()
        .post(format!("http://{}/v1/completions", node.http))
        .header("content-type", "application/json")
        .body(r#"{"model":"silent","prompt":"hi","max_tokens":3,"stream":true}"#)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut text = String::new();
    assert!(response.read_to_string(&mut text).is_err(), "{text}");
    assert!(!text.contains("[DONE]"));
    assert!(start.elapsed() < Duration::from_secs(3));
    // The node and the model are fine.
    assert_eq!(get_models(node.http), ["silent"]);
}

/// An answer read off a raw connection: its head's lines (names
/// lowercased) and its body as sent (chunked encoding left in).
struct RawAnswer {
    head: Vec<String>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n == name).then(|| v.trim())
        })
    }
}

/// Writes a POST of `body` to `path` on `stream`, HTTP/1.1, no
/// `Connection` header.
fn raw_post(stream: &mut std::net::TcpStream, path: &str, body: &str) {
    use std::io::Write;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
}

/// Reads one answer's head off `reader`, then its body: `Content-Length`
/// bytes, or (chunked) through the last chunk.
fn raw_answer(reader: &mut std::io::BufReader<std::net::TcpStream>) -> RawAnswer {
    use std::io::BufRead;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(match line.split_once(':') {
            Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
            None => line,
        });
    }
    let mut answer = RawAnswer {
        head,
        body: Vec::new(),
    };
    if let Some(length) = answer.header("content-length") {
        let mut body = vec![0; length.parse().unwrap()];
        reader.read_exact(&mut body).unwrap();
        answer.body = body;
    } else {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            answer.body.extend_from_slice(size.as_bytes());
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            answer.body.extend_from_slice(&chunk);
            if n == 0 {
                break;
            }
        }
    }
    answer
}

/// Whether the peer closed `reader`'s connection (EOF within 5 s).
fn closed(reader: &mut std::io::BufReader<std::net::TcpStream>) -> bool {
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
}

#[test]
fn the_stand_in_closes_the_connection_after_a_streamed_answer_as_llama_server_does() {
    let dir = TestDir::new("serve-wire");
    let receiver = Receiver::start();
    let node = one_model_node(
        &dir,
        &receiver,
        "wire",
        ModelFile::default(),
        "",
        NodeOptions::default(),
    );
    let backend = SocketAddr::from(([127, 0, 0, 1], port_of(&node, "wire")));
    let connect = || {
        let stream = std::net::TcpStream::connect(backend).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = std::io::BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    };
    let whole = r#"{"model":"wire","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#;
    let streamed = r#"{"model":"wire","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

    // Whole answers: the connection stays open for the next request.
    let (mut stream, mut reader) = connect();
    for _ in 0..3 {
        raw_post(&mut stream, "/v1/chat/completions", whole);
        let answer = raw_answer(&mut reader);
        assert_eq!(answer.head[0], "HTTP/1.1 200 OK");
        assert_eq!(answer.header("keep-alive"), Some("timeout=5, max=100"));
        assert_eq!(answer.header("connection"), None);
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(json["usage"]["completion_tokens"], 3);
        assert_eq!(json["timings"]["predicted_n"], 3);
    }
    // A streamed answer on the same connection: its headers say keep-alive
    // and nothing of a close, then the stand-in closes.
    raw_post(&mut stream, "/v1/chat/completions", streamed);
    let answer = raw_answer(&mut reader);
    assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
    assert_eq!(answer.header("keep-alive"), Some("timeout=5, max=100"));
    assert_eq!(answer.header("connection"), None, "{:?}", answer.head);
    assert!(
        answer.body.ends_with(b"data: [DONE]\n\n\r\n0\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        closed(&mut reader),
        "the connection stayed open after a stream"
    );

    // Error answers say `Connection: close`, and close.
    let (mut stream, mut reader) = connect();
    raw_post(&mut stream, "/v1/chat/completions", "{not json");
    let answer = raw_answer(&mut reader);
    assert_eq!(answer.head[0], "HTTP/1.1 400 Bad Request");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closed(&mut reader));
}

#[test]
fn mixed_traffic_through_the_node_is_answered_in_full_every_time() {
    let dir = TestDir::new("serve-mixed");
    let receiver = Receiver::start();
    let node = one_model_node(
        &dir,
        &receiver,
        "mixed",
        ModelFile::default(),
        "",
        NodeOptions::default(),
    );
    // One client, its connection to the node kept alive; back to back, a
    // streamed answer then a whole one, 25 times, chat and completions.
    let client = http_client();
    for pair in 0..25 {
        let path = if pair % 2 == 0 {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        };
        let streamed = r#"{"model":"mixed","stream":true,"prompt":"p","messages":[{"role":"user","content":"m"}],"max_tokens":4}"#;
        let (status, content_type, body) = post_with(&client, node.http, path, streamed);
        assert_eq!(status, 200, "pair {pair}, streamed: {body}");
        assert_eq!(content_type, "text/event-stream");
        assert_eq!(sse_events(&body).last().map(String::as_str), Some("[DONE]"));
        let whole = r#"{"model":"mixed","prompt":"p","messages":[{"role":"user","content":"m"}],"max_tokens":4}"#;
        let (status, _, body) = post_with(&client, node.http, path, whole);
        assert_eq!(status, 200, "pair {pair}, whole: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["usage"]["completion_tokens"], 4, "{body}");
    }
    let log = node.stderr();
    assert!(!log.contains("did not answer"), "{log}");
}
