//! Latency of an inference request proxied by a node, in two parts, each
//! as ratios against a baseline measured in the same run.
//!
//! `proxy/*`: survey's collector in each state a node meets in the wild,
//! against a node with survey off:
//!
//! - `survey_off`: no telemetry (the baseline);
//! - `collector_healthy`: exports every second to a local receiver;
//! - `collector_dead`: exports every second to a port nothing listens on;
//! - `collector_blackholed`: exports every second to a listener that
//!   accepts connections and never answers;
//! - `survey_off_again`: the baseline node once more, last, so the ratio
//!   of the two baselines shows how far the machine drifted during the run.
//!
//! A request there is one non-streamed chat completion of 16 words, on a
//! kept-alive connection (as every request of the bench).
//!
//! Each node there is a real `mesh-llm serve` with one stand-in backend,
//! started, measured and stopped before the next starts. Then each
//! collector state again, paired with a node with survey off (both
//! running, rounds of requests to each in turn, as below), for a machine
//! whose speed drifts during the run: the median of the rounds' ratios,
//! and the CPU time each node process spent per request (its exports
//! included).
//!
//! `inference/*`: the opt-in inference metrics (`prompt_shape_metrics`),
//! on against off: two nodes, both running through this part, both
//! exporting every second to the same healthy receiver, the stand-in at
//! `token_ms = 0`; measured `off_*` (the baseline), `on_*`, then the
//! baseline node again, `off_again_*` (the drift); each with `whole` (a
//! non-streamed chat completion of 16 words) and `streamed` (the same,
//! streamed with `stream_options.include_usage`, read to `[DONE]`). Then a
//! paired measurement, for a machine whose load changes during the run:
//! rounds of requests to each node in turn, the median of the rounds'
//! ratios, and the CPU time each node process spent per request (all its
//! threads: the recorder and the exporter included), which the machine's
//! load changes far less than a latency.
//!
//! The aim is at most x1.02 beyond the drift.
//!
//! Run with `cargo bench -p mesh-llm --bench proxy` (add `-- inference` or
//! `-- proxy/` for one part); the ratios print at the end.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use survey_test_support::bench::{criterion_home, time_ns};
use survey_test_support::mesh::*;
use survey_test_support::*;

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

fn telemetry(endpoint: &str, extra: &str) -> String {
    format!(
        "[[plugin]]\nname = \"survey\"\nenabled = true\n\n[telemetry]\nendpoint = \"{endpoint}\"\nexport_interval_secs = 1\n{extra}"
    )
}

/// Starts a node serving one model, exporting as `mode` says.
fn start_node(mode: &str, receiver: &Receiver, blackholed: SocketAddr) -> (Node, TestDir) {
    let dir = TestDir::new(&format!("bench-{mode}"));
    let model = write_model(&dir, "m/bench.gguf", ModelFile::default());
    let mut config = format!("[[models]]\nmodel = \"{}\"\n\n", model.display());
    match mode {
        "collector_healthy" | "off" | "off_again" => {
            config.push_str(&telemetry(&receiver.endpoint(), ""))
        }
        "on" => config.push_str(&telemetry(
            &receiver.endpoint(),
            "prompt_shape_metrics = true\n",
        )),
        "collector_dead" => {
            config.push_str(&telemetry(&format!("http://127.0.0.1:{}", free_port()), ""))
        }
        "collector_blackholed" => config.push_str(&telemetry(&format!("http://{blackholed}"), "")),
        _ => {}
    }
    let node = Node::start(&dir, &config, NodeOptions::default());
    node.wait_started();
    assert_eq!(node.status().models.len(), 1, "{mode}: model not loaded");
    (node, dir)
}

/// The benchmark filter given on the command line, if any (criterion
/// applies it too; here it spares starting nodes nothing would measure).
fn filter() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

fn wanted(id: &str) -> bool {
    filter().is_none_or(|f| id.contains(&f))
}

const WHOLE: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"Say something."}],"max_tokens":16}"#;
const STREAMED: &str = r#"{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say something."}],"max_tokens":16}"#;

/// One request of `body` to `url`, its answer read whole.
fn request(client: &reqwest::blocking::Client, url: &str, body: &'static str) -> usize {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer = response.bytes().unwrap();
    if body == STREAMED {
        assert!(answer.ends_with(b"data: [DONE]\n\n"));
    }
    answer.len()
}

fn proxy(c: &mut Criterion) {
    let receiver = Receiver::start();
    let blackholed = blackhole();
    let client = http_client();
    let mut group = c.benchmark_group("proxy");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    // One node at a time: no other node's exports share the machine while
    // one is measured.
    for mode in MODES.iter().chain(&["survey_off_again"]) {
        if !wanted(&format!("proxy/{mode}")) {
            continue;
        }
        let (node, _dir) = start_node(mode, &receiver, blackholed);
        // A few export intervals first, so the collector's state holds.
        std::thread::sleep(Duration::from_secs(3));
        let url = format!("http://{}/v1/chat/completions", node.http);
        group.bench_function(*mode, |b| b.iter(|| request(&client, &url, WHOLE)));
        println!("{mode}: {}", node.status().survey);
        let _ = node.terminate();
    }
    group.finish();
    if wanted("proxy/paired") {
        let (off, _off_dir) = start_node("survey_off", &receiver, blackholed);
        let off_url = format!("http://{}/v1/chat/completions", off.http);
        let mut paired = Vec::new();
        for mode in &MODES[1..] {
            let (node, _dir) = start_node(mode, &receiver, blackholed);
            std::thread::sleep(Duration::from_secs(3));
            let url = format!("http://{}/v1/chat/completions", node.http);
            let nodes = [(off_url.as_str(), off.pid()), (url.as_str(), node.pid())];
            paired.push((*mode, pair(&client, nodes, WHOLE)));
            let _ = node.terminate();
        }
        let _ = off.terminate();
        *PAIRED_STATES.lock().unwrap() = paired;
    }

    if !wanted("inference/") {
        return;
    }
    // Both nodes run from here on, so that the rounds of the paired
    // measurement alternate between them; the baseline node is measured
    // again last.
    let (off, _off_dir) = start_node("off", &receiver, blackholed);
    let (on, _on_dir) = start_node("on", &receiver, blackholed);
    std::thread::sleep(Duration::from_secs(3));
    let url = |node: &Node| format!("http://{}/v1/chat/completions", node.http);
    let (off_url, on_url) = (url(&off), url(&on));
    let mut group = c.benchmark_group("inference");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for (mode, url) in [("off", &off_url), ("on", &on_url), ("off_again", &off_url)] {
        for (kind, body) in [("whole", WHOLE), ("streamed", STREAMED)] {
            group.bench_function(format!("{mode}_{kind}"), |b| {
                b.iter(|| request(&client, url, body))
            });
        }
    }
    group.finish();
    let mut paired = Vec::new();
    for (kind, body) in [("whole", WHOLE), ("streamed", STREAMED)] {
        let nodes = [(off_url.as_str(), off.pid()), (on_url.as_str(), on.pid())];
        paired.push((kind, pair(&client, nodes, body)));
    }
    println!("off: {}", off.status().survey);
    println!("on: {}", on.status().survey);
    let _ = on.terminate();
    let _ = off.terminate();
    *PAIRED.lock().unwrap() = paired;
}

/// Rounds of the paired measurement, and requests per node in a round.
const ROUNDS: usize = 40;
const PER_ROUND: usize = 50;

/// What the paired measurement found: per request, the median time off
/// and on, the median of the rounds' on/off ratios with its quartiles,
/// and the CPU time each node spent per request.
#[derive(Debug, Clone, Copy)]
struct Paired {
    off_us: f64,
    on_us: f64,
    ratio: f64,
    ratio_q1: f64,
    ratio_q3: f64,
    off_cpu_us: f64,
    on_cpu_us: f64,
}

static PAIRED: std::sync::Mutex<Vec<(&str, Paired)>> = std::sync::Mutex::new(Vec::new());

/// The paired measurement of each collector state against survey off.
static PAIRED_STATES: std::sync::Mutex<Vec<(&str, Paired)>> = std::sync::Mutex::new(Vec::new());

/// One line of a paired measurement.
fn paired_line(what: &str, p: &Paired) -> String {
    format!(
        "  {what:<20} off {:>6.0} us   on {:>6.0} us   on/off x{:.3} (quartiles x{:.3} to x{:.3})   node CPU per request: off {:.0} us, on {:.0} us (x{:.3})",
        p.off_us,
        p.on_us,
        p.ratio,
        p.ratio_q1,
        p.ratio_q3,
        p.off_cpu_us,
        p.on_cpu_us,
        p.on_cpu_us / p.off_cpu_us
    )
}

/// CPU time the process `pid` has run, all its threads together, in
/// nanoseconds (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// [`ROUNDS`] rounds of [`PER_ROUND`] requests to each node in turn (the
/// order alternating): the load of a shared machine changes slowly
/// against a round, so each round's ratio compares like with like. The
/// nodes are `[off, on]`: URL and process id.
fn pair(client: &reqwest::blocking::Client, nodes: [(&str, u32); 2], body: &'static str) -> Paired {
    let mut cpu = [0u64; 2];
    let mut block = |node: usize| {
        let (url, pid) = nodes[node];
        let (start, before) = (std::time::Instant::now(), cpu_ns(pid));
        for _ in 0..PER_ROUND {
            request(client, url, body);
        }
        cpu[node] += cpu_ns(pid) - before;
        start.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64
    };
    let (mut offs, mut ons, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (off_us, on_us) = if round % 2 == 0 {
            let off_us = block(0);
            (off_us, block(1))
        } else {
            let on_us = block(1);
            (block(0), on_us)
        };
        offs.push(off_us);
        ons.push(on_us);
        ratios.push(on_us / off_us);
    }
    let quantile = |values: &mut Vec<f64>, q: f64| {
        values.sort_by(f64::total_cmp);
        values[((values.len() - 1) as f64 * q).round() as usize]
    };
    let per_request = |ns: u64| ns as f64 / 1e3 / (ROUNDS * PER_ROUND) as f64;
    Paired {
        off_us: quantile(&mut offs, 0.5),
        on_us: quantile(&mut ons, 0.5),
        ratio: quantile(&mut ratios, 0.5),
        ratio_q1: quantile(&mut ratios, 0.25),
        ratio_q3: quantile(&mut ratios, 0.75),
        off_cpu_us: per_request(cpu[0]),
        on_cpu_us: per_request(cpu[1]),
    }
}

fn report_ratios() {
    if let Some(off) = time_ns("proxy", "survey_off").filter(|_| wanted("proxy/")) {
        println!(
            "\nproxied request, ratio to survey off in this run ({:.0} us):",
            off / 1e3
        );
        for id in MODES[1..].iter().chain(&["survey_off_again"]) {
            if let Some(time) = time_ns("proxy", id) {
                println!("  {id:<22} {:>8.0} us   x{:.3}", time / 1e3, time / off);
            }
        }
    }
    let states = PAIRED_STATES.lock().unwrap();
    if !states.is_empty() {
        println!(
            "paired with survey off (\"on\": the collector state): {ROUNDS} rounds of {PER_ROUND} requests to each node in turn, the median round:"
        );
        for (mode, p) in states.iter() {
            println!("{}", paired_line(mode, p));
        }
    }
    if !wanted("inference/") {
        return;
    }
    println!("\ninference metrics, switch on against off in this run (token_ms = 0):");
    for kind in ["whole", "streamed"] {
        let time = |mode: &str| time_ns("inference", &format!("{mode}_{kind}"));
        let (Some(off), Some(on), Some(again)) = (time("off"), time("on"), time("off_again"))
        else {
            println!(
                "  {kind}: no estimates found under {}",
                criterion_home().display()
            );
            continue;
        };
        println!(
            "  {kind:<9} off {:>6.0} us   on {:>6.0} us   on/off x{:.3}   off again {:>6.0} us, drift x{:.3}   on/mean of both offs x{:.3}",
            off / 1e3,
            on / 1e3,
            on / off,
            again / 1e3,
            again / off,
            on / ((off + again) / 2.0),
        );
    }
    println!(
        "paired: {ROUNDS} rounds of {PER_ROUND} requests to each node in turn, the median round:"
    );
    for (kind, p) in PAIRED.lock().unwrap().iter() {
        println!("{}", paired_line(kind, p));
    }
}

criterion_group!(benches, proxy);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report_ratios();
}
