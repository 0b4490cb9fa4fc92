//! What survey costs a node that is doing nothing, and what it sends:
//!
//! 1. **Wake-ups.** The voluntary context switches of each thread
//!    (read from `/proc/self/task/*/status`, Linux only) over an idle
//!    window, per second and per export, against the same window measured
//!    first with survey switched off (`enabled = false`, what an opted-out
//!    node runs). Idle, the recorder never wakes; the other threads wake
//!    for the periodic export only.
//! 2. **Bytes on the wire.** The gzip body of one export from an idle node
//!    with one model, then after 200 distinct models were loaded and
//!    unloaded, without and with a series reset; per node-day at the
//!    default 15 s interval.
//!
//! Run with `cargo bench --bench idle_cost` on an otherwise idle machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use survey_otlp_receiver::Receiver;

/// The idle window wake-ups are counted over.
const WINDOW: Duration = Duration::from_secs(10);
/// Exports per day at the default interval.
const EXPORTS_PER_DAY: f64 = 86_400.0 / 15.0;

struct Spec {
    slot: u64,
}

impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(
            self.slot,
            format!("/models/model-{}-Q4_K_M.gguf", self.slot),
        )
        .architecture("qwen3")
        .quantization("Q4_K_M")
        .context_length(8192)
        .backend("llama.cpp")
    }
}

#[derive(Debug, survey::FailureReason)]
enum Error {
    #[survey(reason = "other")]
    Other,
}

#[survey::launch(kind = "runtime_load", model = spec)]
async fn launch(spec: &Spec) -> Result<(), Error> {
    if spec.slot == u64::MAX {
        return Err(Error::Other);
    }
    Ok(())
}

#[survey::unload(model = spec)]
async fn unload(spec: &Spec) -> Result<(), Error> {
    let _ = spec.slot;
    Ok(())
}

/// Voluntary context switches per thread of this process, by thread name
/// (several threads of one name add up).
fn switches() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let count = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_string()).or_default() += count;
    }
    out
}

/// Wake-ups per thread name over `WINDOW`, the main thread (which sleeps
/// through it) and the bench's own receiver left out. A thread that ends
/// within the window is not counted.
fn idle_wakeups() -> BTreeMap<String, u64> {
    let main = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
    let before = switches();
    std::thread::sleep(WINDOW);
    let after = switches();
    after
        .into_iter()
        .filter(|(name, _)| *name != main.trim() && !name.starts_with("otlp-receiver"))
        .map(|(name, n)| {
            let was = before.get(&name).copied().unwrap_or(0);
            (name, n.saturating_sub(was))
        })
        .collect()
}

fn config(endpoint: &str, extra: &str) -> survey::TelemetryConfig {
    toml::from_str(&format!(
        "enabled = true\nendpoint = \"{endpoint}\"\n{extra}"
    ))
    .expect("telemetry table")
}

fn start(config: &survey::TelemetryConfig) -> survey::SurveyGuard {
    let guard = survey::Setup::new(config)
        .service_version("1.0.0")
        .hardware(survey::HardwareFacts::cpu_only())
        .start();
    assert!(guard.is_enabled(), "{}", guard.status());
    guard
}

fn wakeups() {
    println!("## Wake-ups over {WINDOW:?} idle");
    let receiver = Receiver::start();
    // The baseline: survey switched off, as an opted-out node runs it.
    let off_config: survey::TelemetryConfig = toml::from_str("enabled = false").expect("table");
    let off_guard = survey::Setup::new(&off_config)
        .hardware(survey::HardwareFacts::cpu_only())
        .start();
    assert!(!off_guard.is_enabled());
    futures::executor::block_on(launch(&Spec { slot: 1 })).unwrap();
    let off = idle_wakeups();
    drop(off_guard);

    let guard = start(&config(
        &receiver.endpoint(),
        "export_interval_secs = 1\ntimeout_secs = 1",
    ));
    futures::executor::block_on(launch(&Spec { slot: 2 })).unwrap();
    // Let the first exports settle.
    std::thread::sleep(Duration::from_secs(2));
    let exports_before = guard.status().exports_ok;
    let on = idle_wakeups();
    let exports = guard.status().exports_ok - exports_before;
    println!("survey on, one model loaded, an export every second ({exports} exports):");
    println!("| thread | wake-ups | per second | per export | with survey off |");
    println!("|---|---|---|---|---|");
    for (name, n) in &on {
        println!(
            "| {name} | {n} | {:.2} | {:.2} | {} |",
            *n as f64 / WINDOW.as_secs_f64(),
            *n as f64 / exports.max(1) as f64,
            off.get(name).map_or("-".to_string(), |n| n.to_string())
        );
    }
    let (on_total, off_total): (u64, u64) = (on.values().sum(), off.values().sum());
    println!(
        "| all threads | {on_total} | {:.2} | {:.2} | {off_total} |",
        on_total as f64 / WINDOW.as_secs_f64(),
        on_total as f64 / exports.max(1) as f64,
    );
    let recorder = on.get("survey-recorder").copied().unwrap_or(0);
    println!("recorder wake-ups while idle: {recorder}");
    drop(guard);
}

/// The body size of an export made now. The first flush exports (and may
/// be followed by a series reset); the second exports what is current after
/// it.
fn bytes_of_next_export(receiver: &Receiver, guard: &survey::SurveyGuard) -> usize {
    assert!(guard.flush(Duration::from_secs(10)));
    assert!(guard.flush(Duration::from_secs(10)));
    let requests = receiver.requests();
    requests.last().expect("an export").raw_body.len()
}

fn wire_bytes() {
    println!("\n## Bytes per export (gzip), and per node-day at 15 s");
    println!("| node | bytes per export | per node-day |");
    println!("|---|---|---|");
    let row = |what: &str, bytes: usize| {
        println!(
            "| {what} | {bytes} | {:.2} MB |",
            bytes as f64 * EXPORTS_PER_DAY / 1e6
        );
    };
    for (label, reset) in [
        ("without series resets", "series_reset_secs = 0"),
        ("with series resets", "series_reset_secs = 0.5"),
    ] {
        let receiver = Receiver::start();
        let guard = start(&config(
            &receiver.endpoint(),
            &format!("export_interval_secs = 600\n{reset}"),
        ));
        futures::executor::block_on(launch(&Spec { slot: 0 })).unwrap();
        let idle = bytes_of_next_export(&receiver, &guard);
        for slot in 1..=200 {
            let spec = Spec { slot };
            futures::executor::block_on(launch(&spec)).unwrap();
            futures::executor::block_on(unload(&spec)).unwrap();
        }
        let after = bytes_of_next_export(&receiver, &guard);
        // A reset is due half a second after the previous one, in a later
        // second than the series' start: flush until one has happened.
        let settled = if reset.ends_with(" 0") {
            after
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            while guard.status().series_resets == 0 {
                assert!(Instant::now() < deadline, "no series reset");
                std::thread::sleep(Duration::from_millis(200));
                assert!(guard.flush(Duration::from_secs(10)));
            }
            bytes_of_next_export(&receiver, &guard)
        };
        if reset.ends_with(" 0") {
            row("idle, one model loaded", idle);
            row("after 200 distinct models", after);
        } else {
            row(
                &format!(
                    "after 200 distinct models, {label} ({} resets)",
                    guard.status().series_resets
                ),
                settled,
            );
        }
        drop(guard);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours skips the run.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"idle_cost".contains(a.as_str()))
    {
        return;
    }
    let start = Instant::now();
    wakeups();
    wire_bytes();
    println!("\n(measured in {:.0?})", start.elapsed());
}
