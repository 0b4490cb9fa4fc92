//! Cost of an instrumented launch + unload, as ratios against the same
//! functions without annotations, measured in the same run:
//!
//! - `bare`: no survey at all (the baseline);
//! - `disabled`: annotated, survey not started (one atomic load per call);
//! - `enabled`: annotated, survey exporting to a local receiver.
//!
//! And the cost of one `survey::record_inference` call, against a call of
//! a function that does nothing with the same arguments:
//!
//! - `bare`: the baseline;
//! - `switch_off`: survey exporting, `prompt_shape_metrics = false`;
//! - `switch_on`: survey exporting, `prompt_shape_metrics = true` (a
//!   registry lookup and a push onto the bounded queue).
//!
//! Run with `cargo bench --bench hot_path`; the ratios print at the end.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use survey_test_support::Receiver;
use survey_test_support::bench::{BenchError as Error, BenchModel as Spec, mean_ns};

/// The model every call launches.
fn spec() -> Spec {
    Spec::new(1, "/models/Qwen3-8B-Q4_K_M.gguf")
}

async fn bare_launch(spec: &Spec) -> Result<u64, Error> {
    if spec.slot == u64::MAX {
        return Err(Error::Other);
    }
    Ok(black_box(spec.slot))
}

async fn bare_unload(spec: &Spec) -> Result<(), Error> {
    black_box(spec.slot);
    Ok(())
}

#[survey::launch(kind = "runtime_load", model = spec)]
async fn launch(spec: &Spec) -> Result<u64, Error> {
    if spec.slot == u64::MAX {
        return Err(Error::Other);
    }
    Ok(black_box(spec.slot))
}

#[survey::unload(model = spec)]
async fn unload(spec: &Spec) -> Result<(), Error> {
    black_box(spec.slot);
    Ok(())
}

fn lifecycle(c: &mut Criterion) {
    let spec = spec();
    let mut group = c.benchmark_group("launch_unload");
    group.bench_function("bare", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                bare_launch(&spec).await.unwrap();
                bare_unload(&spec).await.unwrap();
            })
        })
    });
    group.bench_function("disabled", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                launch(&spec).await.unwrap();
                unload(&spec).await.unwrap();
            })
        })
    });

    let receiver = Receiver::start();
    let guard = start(&receiver, false);
    group.bench_function("enabled", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                launch(&spec).await.unwrap();
                unload(&spec).await.unwrap();
            })
        })
    });
    group.finish();
    assert!(guard.flush(Duration::from_secs(10)));
    let status = guard.status();
    println!(
        "enabled run: {} events recorded, {} dropped, {} exports ok",
        status.events_recorded, status.events_dropped, status.exports_ok
    );
    guard.shutdown();
}

/// The numbers of one answered request, as llama-server reports them.
fn answered() -> survey::Inference {
    survey::Inference::new(survey::RequestOutcome::Ok)
        .prompt_tokens(black_box(700))
        .output_tokens(64)
        .prefill(survey::Throughput::new(500, 250.0))
        .decode(survey::Throughput::new(64, 1600.0))
}

#[inline(never)]
fn bare_record(spec: &Spec, inference: survey::Inference) {
    black_box((spec.slot, inference));
}

/// Starts survey exporting to `receiver` once an hour, with
/// `prompt_shape_metrics` as given.
fn start(receiver: &Receiver, prompt_shape: bool) -> survey::SurveyGuard {
    let config: survey::TelemetryConfig = toml::from_str(&format!(
        "enabled = true\nendpoint = \"{}\"\nexport_interval_secs = 3600\nqueue_size = 65536\n\
         prompt_shape_metrics = {prompt_shape}",
        receiver.endpoint()
    ))
    .unwrap();
    let guard = survey::Setup::new(&config)
        .hardware(survey::HardwareFacts::cpu_only())
        .start();
    assert!(guard.is_enabled());
    guard
}

/// [`start`], with the bench's model loaded.
fn started(receiver: &Receiver, prompt_shape: bool) -> survey::SurveyGuard {
    let guard = start(receiver, prompt_shape);
    futures::executor::block_on(launch(&spec())).unwrap();
    guard
}

fn inference(c: &mut Criterion) {
    let spec = spec();
    let receiver = Receiver::start();
    let mut group = c.benchmark_group("record_inference");
    group.bench_function("bare", |b| b.iter(|| bare_record(&spec, answered())));
    let guard = started(&receiver, false);
    group.bench_function("switch_off", |b| {
        b.iter(|| survey::record_inference(&spec, answered()))
    });
    guard.shutdown();
    let guard = started(&receiver, true);
    group.bench_function("switch_on", |b| {
        b.iter(|| survey::record_inference(&spec, answered()))
    });
    group.finish();
    assert!(guard.flush(Duration::from_secs(10)));
    let status = guard.status();
    assert!(status.prompt_shape_metrics);
    println!(
        "switch_on run: {} events recorded, {} dropped",
        status.events_recorded, status.events_dropped
    );
    guard.shutdown();
}

fn report_ratios() {
    let groups = [
        ("launch_unload", "launch + unload", ["disabled", "enabled"]),
        (
            "record_inference",
            "record_inference",
            ["switch_off", "switch_on"],
        ),
    ];
    for (group, what, ids) in groups {
        let Some(bare) = mean_ns(group, "bare") else {
            continue;
        };
        println!("\n{what}, ratio to the bare baseline of this run ({bare:.1} ns):");
        for id in ids {
            if let Some(mean) = mean_ns(group, id) {
                println!("  {id:<10} {mean:>10.1} ns   x{:.2}", mean / bare);
            }
        }
    }
}

criterion_group!(benches, lifecycle, inference);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report_ratios();
}
