//! Latency of an inference request proxied by a node, with survey's
//! collector in each state a node meets in the wild, as ratios against a
//! node with survey off, measured in the same run:
//!
//! - `survey_off`: no telemetry (the baseline);
//! - `collector_healthy`: exports every second to a local receiver;
//! - `collector_dead`: exports every second to a port nothing listens on;
//! - `collector_blackholed`: exports every second to a listener that
//!   accepts connections and never answers;
//! - `survey_off_again`: the baseline node once more, last, so the ratio
//!   of the two baselines shows how far the machine drifted during the run.
//!
//! Each is a real `mesh-llm serve` with one stand-in backend, started,
//! measured and stopped before the next starts; a request is
//! one non-streamed chat completion of 16 words through the node's
//! inference API, on a kept-alive connection. The aim is at most x1.02.
//!
//! Run with `cargo bench -p mesh-llm --bench proxy`; the ratios print at
//! the end.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use support::*;

/// The nodes, in the order they are measured (then `survey_off_again`, a
/// node like the first).
const MODES: [&str; 4] = [
    "survey_off",
    "collector_blackholed",
    "collector_dead",
    "collector_healthy",
];

/// A listener that accepts connections and never reads or answers.
fn blackhole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn telemetry(endpoint: &str) -> String {
    format!(
        "[[plugin]]\nname = \"survey\"\nenabled = true\n\n[telemetry]\nendpoint = \"{endpoint}\"\nexport_interval_secs = 1\n"
    )
}

/// Starts a node serving one model, exporting as `mode` says.
fn start_node(mode: &str, receiver: &Receiver, blackholed: SocketAddr) -> (Node, TestDir) {
    let dir = TestDir::new(&format!("bench-{mode}"));
    let model = write_model(&dir, "m/bench.gguf", ModelFile::default());
    let mut config = format!("[[models]]\nmodel = \"{}\"\n\n", model.display());
    match mode {
        "collector_healthy" => config.push_str(&telemetry(&receiver.endpoint())),
        "collector_dead" => {
            config.push_str(&telemetry(&format!("http://127.0.0.1:{}", dead_port())))
        }
        "collector_blackholed" => config.push_str(&telemetry(&format!("http://{blackholed}"))),
        _ => {}
    }
    let node = Node::start(&dir, &config, NodeOptions::default());
    node.wait_started();
    assert_eq!(node.status().models.len(), 1, "{mode}: model not loaded");
    (node, dir)
}

fn proxy(c: &mut Criterion) {
    let receiver = Receiver::start();
    let blackholed = blackhole();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let body = r#"{"model":"bench","messages":[{"role":"user","content":"Say something."}],"max_tokens":16}"#;
    let mut group = c.benchmark_group("proxy");
    // One node at a time: no other node's exports share the machine while
    // one is measured.
    for mode in MODES.iter().chain(&["survey_off_again"]) {
        let (node, _dir) = start_node(mode, &receiver, blackholed);
        // A few export intervals first, so the collector's state holds.
        std::thread::sleep(Duration::from_secs(3));
        let url = format!("http://{}/v1/chat/completions", node.http);
        group.bench_function(*mode, |b| {
            b.iter(|| {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .unwrap();
                assert_eq!(response.status().as_u16(), 200);
                response.bytes().unwrap()
            })
        });
        println!("{mode}: {}", node.status().survey);
        let _ = node.terminate();
    }
    group.finish();
}

/// Criterion's output directory, found as criterion finds it.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

/// Time of one request, from criterion's estimates of this run: the slope
/// it prints as `time`, else the mean.
fn time_ns(id: &str) -> Option<f64> {
    let path = criterion_home()
        .join("proxy")
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}

fn report_ratios() {
    let Some(off) = time_ns("survey_off") else {
        println!("no estimates found under {}", criterion_home().display());
        return;
    };
    println!(
        "\nproxied request, ratio to survey off in this run ({:.0} us):",
        off / 1e3
    );
    for id in MODES[1..].iter().chain(&["survey_off_again"]) {
        if let Some(time) = time_ns(id) {
            println!("  {id:<22} {:>8.0} us   x{:.3}", time / 1e3, time / off);
        }
    }
}

criterion_group!(benches, proxy);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report_ratios();
}
