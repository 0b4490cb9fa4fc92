//! An idle node sends what changed, and a heartbeat: the decoded requests
//! of a real `mesh-llm serve` process, with the heartbeat shortened by
//! config. An idle node sends one export per heartbeat, each repeating
//! what the collector holds; a launch goes out within one interval; after
//! an outage spanning several heartbeats every count is exact.

use std::time::{Duration, Instant};

use survey::schema;
use survey_test_support::mesh::*;
use survey_test_support::*;

fn model(dir: &TestDir, name: &str) -> std::path::PathBuf {
    write_model(
        dir,
        &format!("models/{name}.gguf"),
        ModelFile {
            architecture: Some("qwen3"),
            file_type: Some(15),
            ..ModelFile::default()
        },
    )
}

/// `[telemetry]` exporting to `receiver` every `interval` seconds with a
/// heartbeat every `heartbeat` seconds.
fn telemetry(receiver: &Receiver, interval: f64, heartbeat: f64) -> String {
    format!(
        "[[plugin]]\nname = \"survey\"\nenabled = true\n\n[telemetry]\nendpoint = \"{}\"\n\
         export_interval_secs = {interval}\ntimeout_secs = {interval}\nheartbeat_secs = {heartbeat}\n",
        receiver.endpoint()
    )
}

/// A started node in a fresh directory `name`, exporting to a fresh
/// receiver every `interval` seconds with heartbeats every `heartbeat`.
fn started(name: &str, interval: f64, heartbeat: f64) -> (TestDir, Receiver, Node) {
    let dir = TestDir::new(name);
    let receiver = Receiver::start();
    let node = Node::start(
        &dir,
        &telemetry(&receiver, interval, heartbeat),
        NodeOptions::default(),
    );
    node.wait_started();
    (dir, receiver, node)
}

/// Waits until a request arrives whose points satisfy `done`; returns when
/// it was seen and how many requests had arrived then.
fn wait_for_request(
    receiver: &Receiver,
    timeout: Duration,
    done: impl Fn(&[Point]) -> bool,
) -> (Instant, usize) {
    let deadline = Instant::now() + timeout;
    loop {
        let requests = receiver.requests();
        if requests.iter().any(|r| done(&r.points())) {
            return (Instant::now(), requests.len());
        }
        assert!(Instant::now() < deadline, "no such request in {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_idle_node_sends_one_export_per_heartbeat_and_a_launch_within_one_interval() {
    const INTERVAL: f64 = 0.5;
    const HEARTBEAT: f64 = 3.0;
    let (dir, receiver, node) = started("heartbeat", INTERVAL, HEARTBEAT);
    // Let the first exports (the node's own gauges) settle, then launch.
    std::thread::sleep(Duration::from_secs_f64(2.0 * INTERVAL));
    let loaded = Instant::now();
    node.load(&model(&dir, "Qwen3-8B-Q4_K_M"), &[]);
    let returned = loaded.elapsed();
    let (seen, _) = wait_for_request(&receiver, Duration::from_secs(10), |points| {
        total(points, schema::LAUNCH_SUCCESS_TOTAL) == 1.0
    });
    // The launch's export: within one interval of the launch's end (and
    // the time the export takes).
    let took = seen.duration_since(loaded).saturating_sub(returned);
    assert!(
        took <= Duration::from_secs_f64(INTERVAL + 0.4),
        "the launch reached the collector {took:?} after it ended"
    );

    // Idle for four heartbeats: the requests that arrive are heartbeats,
    // one per heartbeat_secs, each repeating what the collector holds.
    std::thread::sleep(Duration::from_secs_f64(INTERVAL));
    let before = receiver.requests().len();
    let mut arrivals = Vec::new();
    let watch = Instant::now();
    let mut count = before;
    while watch.elapsed() < Duration::from_secs_f64(4.0 * HEARTBEAT) {
        let now = receiver.requests().len();
        if now > count {
            arrivals.extend(std::iter::repeat_n(watch.elapsed(), now - count));
            count = now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let requests = receiver.requests();
    let idle = &requests[before..count];
    assert!(
        (3..=5).contains(&idle.len()),
        "four heartbeats' time, {} requests at {arrivals:?} (heartbeat_secs = 0 would send {})",
        idle.len(),
        (4.0 * HEARTBEAT / INTERVAL) as usize
    );
    for gap in arrivals.windows(2) {
        let gap = (gap[1] - gap[0]).as_secs_f64();
        assert!(
            (HEARTBEAT - INTERVAL..=HEARTBEAT + 2.0 * INTERVAL).contains(&gap),
            "heartbeats {gap:.2} s apart: {arrivals:?}"
        );
    }
    let content = |request: &survey_test_support::Request| {
        let mut lines: Vec<String> = request.points().iter().map(Point::without_start).collect();
        lines.sort();
        lines
    };
    let held = content(&requests[before - 1]);
    for heartbeat in idle {
        assert_eq!(heartbeat.answered, 200);
        assert_eq!(content(heartbeat), held, "a heartbeat repeats the values");
    }
    let points = idle.last().unwrap().points();
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 1.0);
    one(
        &points,
        schema::MODEL_LOADED,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );

    // What the node shows: the export left out, since when, and the heartbeat.
    let out = node.cli(&["survey", "show"]);
    let table = String::from_utf8(out.stdout).unwrap();
    let first = table.lines().next().unwrap_or_default();
    assert!(
        first.contains(", unchanged since ") && first.contains(" UTC, not sent; heartbeat in ")
            || first.contains(", sent, "),
        "{table}"
    );
    node.assert_survey_says("unchanged (not sent) ");
    node.stop();
}

#[test]
fn after_an_outage_spanning_several_heartbeats_every_count_is_exact() {
    const INTERVAL: f64 = 0.3;
    const HEARTBEAT: f64 = 1.0;
    let (dir, receiver, node) = started("heartbeat-outage", INTERVAL, HEARTBEAT);
    let addr = receiver.addr();
    let stays = model(&dir, "Qwen3-8B-Q4_K_M");
    node.load(&stays, &[]);
    wait_for_request(&receiver, Duration::from_secs(10), |points| {
        total(points, schema::LAUNCH_SUCCESS_TOTAL) == 1.0
    });

    // The collector goes away for several heartbeats; the node keeps
    // launching and unloading, and idles in between.
    receiver.stop();
    let outage = Instant::now();
    let others = [
        "Llama-3-8B-Q4_K_M",
        "Mistral-7B-Q4_K_M",
        "Phi-3-mini-Q4_K_M",
    ];
    for name in others {
        node.load(&model(&dir, name), &[]);
        std::thread::sleep(Duration::from_secs_f64(HEARTBEAT));
        node.unload(name);
        std::thread::sleep(Duration::from_secs_f64(HEARTBEAT / 2.0));
    }
    node.load(&model(&dir, others[0]), &[]);
    std::thread::sleep(Duration::from_secs_f64(2.0 * HEARTBEAT));
    assert!(outage.elapsed() >= Duration::from_secs_f64(5.0 * HEARTBEAT));
    node.wait_status(Duration::from_secs(10), |s| s.survey.contains("failing ("));

    // Back: the next export carries every count.
    let receiver = Receiver::start_on(addr).expect("the port comes back");
    wait_for_request(&receiver, Duration::from_secs(10), |points| {
        total(points, schema::LAUNCH_SUCCESS_TOTAL) == 5.0
    });
    let points = receiver.latest_points();
    let by_model = |metric: &str, name: &str| -> f64 {
        of(&points, metric)
            .iter()
            .filter(|p| p.attr("mesh_llm.model") == Some(name))
            .map(|p| p.value)
            .sum()
    };
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 5.0);
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 5.0);
    assert_eq!(total(&points, schema::LAUNCH_FAILURE_TOTAL), 0.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 3.0);
    assert_eq!(by_model(schema::LAUNCH_SUCCESS_TOTAL, others[0]), 2.0);
    for name in others {
        assert_eq!(by_model(schema::UNLOAD_TOTAL, name), 1.0, "{name}");
    }
    assert_eq!(one(&points, schema::LOADED_MODELS, &[]).value, 2.0);
    let uptimes: u64 = of(&points, schema::UPTIME_S)
        .iter()
        .map(|p| p.bucket_counts.iter().sum::<u64>())
        .sum();
    assert_eq!(uptimes, 3, "one uptime per unload");
    node.stop();
}
