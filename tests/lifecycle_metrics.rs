//! Annotated launches, failures, unloads and exits arrive at a real OTLP/HTTP
//! receiver with the right names, units, values and attributes.

use std::time::{Duration, Instant};

use survey::schema;
use survey_test_support::host::*;
use survey_test_support::*;

const FLUSH: Duration = Duration::from_secs(10);

/// How long the runtime load that is unloaded later takes.
const LAUNCH_DELAY: Duration = Duration::from_millis(30);

/// How long the two runtime loads stay up at least.
const UP: Duration = Duration::from_millis(50);

/// Survey running against a receiver that has received one export of a
/// workload covering every lifecycle event, and what the test measured
/// around each call.
struct Lifecycle {
    guard: survey::SurveyGuard,
    receiver: Receiver,
    points: Vec<Point>,
    /// The startup launch, still loaded.
    kept: Running,
    /// Bounds of the GLM launch's duration, in milliseconds.
    glm_launch_ms: (f64, f64),
    /// Bounds of the GLM model's uptime until its unload, in seconds.
    glm_uptime_s: (f64, f64),
    /// Bounds of the phi model's uptime until its exit, in seconds.
    phi_uptime_s: (f64, f64),
    /// Released last, once survey is stopped.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

/// Seconds from `from` to `to` (zero if `to` came first).
fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

impl Lifecycle {
    /// A startup launch that stays loaded, a runtime load that is unloaded,
    /// a runtime load whose backend crashes, and one failing launch per
    /// reason; then a flush.
    async fn run() -> Lifecycle {
        let serial = serial().await;
        let receiver = Receiver::start();
        let guard = start(&receiver.endpoint(), "");

        // A startup launch that stays loaded, on a path with directories.
        let kept = Spec::new(1, "/home/alice/models/Qwen3-8B-Q4_K_M.gguf", 32768);
        let kept = launch_as(survey::LaunchKind::Startup, &kept).await.unwrap();
        // A runtime load that is unloaded later.
        let unloaded = Spec::new(2, "/srv/m/GLM-4.5-Air-Q4_K_M-00001-of-00003.gguf", 8192);
        let before_glm = Instant::now();
        let unloaded_running = load(&unloaded, LAUNCH_DELAY, None).await.unwrap();
        let after_glm = Instant::now();
        // A runtime load whose backend crashes.
        let crashing = Spec::new(3, "/srv/m/phi-4-Q8_0.gguf", 200_000);
        let before_phi = Instant::now();
        let crashing_running = load(&crashing, Duration::ZERO, None).await.unwrap();
        let after_phi = Instant::now();
        // One failing launch per reason, each of its own model.
        for (i, error) in LaunchError::ALL.into_iter().enumerate() {
            let spec = Spec::new(100 + i as u64, &format!("/m/fail{i}.gguf"), 4096);
            let result = load(&spec, Duration::ZERO, Some(error)).await;
            assert_eq!(
                result.unwrap_err(),
                error,
                "the function's own error comes back"
            );
        }
        tokio::time::sleep(UP).await;
        let before_unload = Instant::now();
        unload(unloaded_running).await.unwrap();
        let after_unload = Instant::now();
        crashed(&crashing_running);
        let after_crash = Instant::now();

        assert!(guard.flush(FLUSH), "{}", guard.status());
        let points = receiver.latest_points();
        Lifecycle {
            guard,
            receiver,
            points,
            kept,
            glm_launch_ms: (
                LAUNCH_DELAY.as_secs_f64() * 1000.0,
                secs(before_glm, after_glm) * 1000.0,
            ),
            glm_uptime_s: (
                secs(after_glm, before_unload),
                secs(before_glm, after_unload),
            ),
            phi_uptime_s: (secs(after_phi, after_unload), secs(before_phi, after_crash)),
            _serial: serial,
        }
    }

    /// Unloads the startup launch, the last model loaded, and flushes.
    async fn unload_the_last_model(&mut self) -> Vec<Point> {
        let kept = Running {
            slot: self.kept.slot,
            path: self.kept.path.clone(),
        };
        unload(kept).await.unwrap();
        assert!(self.guard.flush(FLUSH));
        self.receiver.latest_points()
    }
}

/// A histogram point holding one value that lies within `[low, high]`, in
/// the bucket of `bounds` that value belongs to.
fn assert_one_value_within(p: &Point, bounds: &[f64], (low, high): (f64, f64)) {
    assert_eq!(p.bounds, bounds, "{p:?}");
    assert_eq!(p.value, 1.0, "{p:?}");
    let sum = p.sum.unwrap();
    assert!(
        low <= sum && sum <= high,
        "{sum} not in [{low}, {high}]: {p:?}"
    );
    let bucket = bounds.iter().take_while(|b| sum > **b).count();
    let mut expected = vec![0; bounds.len() + 1];
    expected[bucket] = 1;
    assert_eq!(p.bucket_counts, expected, "{p:?}");
}

#[tokio::test]
async fn every_export_is_a_gzipped_protobuf_post_to_v1_metrics() {
    let run = Lifecycle::run().await;
    let requests = run.receiver.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/metrics");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        assert_eq!(request.header("content-encoding"), Some("gzip"));
        assert!(request.decode_error.is_none(), "{:?}", request.decode_error);
    }
}

#[tokio::test]
async fn the_resource_is_service_identity_instance_id_and_sdk_only() {
    let run = Lifecycle::run().await;
    let requests = run.receiver.requests();
    let resource = requests.last().unwrap().resource_attributes();
    let keys: Vec<&str> = resource.keys().map(String::as_str).collect();
    assert_eq!(keys, RESOURCE_KEYS);
    assert!(schema::is_uuid_v4(&resource["service.instance.id"]));
    assert_eq!(resource["service.name"], "mesh-llm");
    assert_eq!(resource["service.version"], "9.8.7");
}

#[tokio::test]
async fn exactly_the_ten_schema_metrics_arrive_with_their_units_and_kinds() {
    let run = Lifecycle::run().await;
    let points = &run.points;
    let expect_kind = [
        (schema::LAUNCH_TOTAL, PointKind::Counter, "{launch}"),
        (schema::LAUNCH_SUCCESS_TOTAL, PointKind::Counter, "{launch}"),
        (schema::LAUNCH_FAILURE_TOTAL, PointKind::Counter, "{launch}"),
        (schema::UNLOAD_TOTAL, PointKind::Counter, "{unload}"),
        (schema::EXIT_UNEXPECTED_TOTAL, PointKind::Counter, "{exit}"),
        (schema::LOADED_MODELS, PointKind::Gauge, "{model}"),
        (schema::MODEL_LOADED, PointKind::Gauge, "{instance}"),
        (schema::MODEL_CONTEXT_LENGTH, PointKind::Gauge, "{token}"),
        (schema::LAUNCH_DURATION_MS, PointKind::Histogram, "ms"),
        (schema::UPTIME_S, PointKind::Histogram, "s"),
    ];
    for (metric, kind, unit) in expect_kind {
        let found = of(points, metric);
        assert!(!found.is_empty(), "{metric} missing");
        for p in found {
            assert_eq!((p.kind, p.unit.as_str()), (kind, unit), "{metric}");
        }
    }
    let names: std::collections::BTreeSet<&str> =
        points.iter().map(|p| p.metric.as_str()).collect();
    assert_eq!(names.len(), 10, "exactly the ten schema metrics: {names:?}");
}

#[tokio::test]
async fn counters_count_every_launch_unload_and_exit() {
    let run = Lifecycle::run().await;
    let points = &run.points;
    assert_eq!(total(points, schema::LAUNCH_TOTAL), 11.0);
    assert_eq!(total(points, schema::LAUNCH_SUCCESS_TOTAL), 3.0);
    assert_eq!(total(points, schema::LAUNCH_FAILURE_TOTAL), 8.0);
    assert_eq!(total(points, schema::UNLOAD_TOTAL), 1.0);
    assert_eq!(total(points, schema::EXIT_UNEXPECTED_TOTAL), 1.0);
}

#[tokio::test]
async fn a_startup_launch_carries_exactly_the_model_and_hardware_attributes() {
    let run = Lifecycle::run().await;
    let startup = one(
        &run.points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );
    let expected: Vec<(&str, &str)> = vec![
        ("mesh_llm.architecture", "qwen3"),
        ("mesh_llm.backend", "llama.cpp"),
        ("mesh_llm.backend_device", "cuda"),
        ("mesh_llm.context_bucket", "16k_32k"),
        ("mesh_llm.gpu_count", "2"),
        ("mesh_llm.gpu_name", "NVIDIA GeForce RTX 4090"),
        (
            "mesh_llm.gpu_stable_id",
            startup.attr("mesh_llm.gpu_stable_id").unwrap(),
        ),
        ("mesh_llm.is_soc", "false"),
        ("mesh_llm.launch_kind", "startup"),
        ("mesh_llm.model", "Qwen3-8B-Q4_K_M"),
        ("mesh_llm.quantization", "Q4_K_M"),
        ("mesh_llm.service_version", "9.8.7"),
    ];
    let actual: Vec<(&str, &str)> = startup
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(actual, expected);
    assert_eq!(startup.attr("mesh_llm.gpu_stable_id").unwrap().len(), 16);
    assert_eq!(startup.value, 1.0);
}

#[tokio::test]
async fn a_runtime_load_is_named_without_directories_or_split_suffix() {
    let run = Lifecycle::run().await;
    one(
        &run.points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[
            ("mesh_llm.model", "GLM-4.5-Air-Q4_K_M"),
            ("mesh_llm.launch_kind", "runtime_load"),
            ("mesh_llm.context_bucket", "<=8k"),
        ],
    );
}

#[tokio::test]
async fn each_failed_launch_carries_its_own_reason_and_a_duration() {
    let run = Lifecycle::run().await;
    let points = &run.points;
    for (i, error) in LaunchError::ALL.into_iter().enumerate() {
        let reason = survey::FailureReason::failure_reason(&error).as_str();
        let p = one(
            points,
            schema::LAUNCH_FAILURE_TOTAL,
            &[("mesh_llm.model", &format!("fail{i}"))],
        );
        assert_eq!(p.attr("mesh_llm.failure_reason"), Some(reason));
        assert_eq!(p.value, 1.0);
        let d = one(
            points,
            schema::LAUNCH_DURATION_MS,
            &[
                ("mesh_llm.model", &format!("fail{i}")),
                ("mesh_llm.failure_reason", reason),
            ],
        );
        assert_eq!(d.value, 1.0);
    }
    for p in of(points, schema::LAUNCH_SUCCESS_TOTAL) {
        assert_eq!(p.attr("mesh_llm.failure_reason"), None);
    }
}

#[tokio::test]
async fn the_launch_duration_is_the_time_the_launch_took() {
    let run = Lifecycle::run().await;
    let glm_duration = one(
        &run.points,
        schema::LAUNCH_DURATION_MS,
        &[("mesh_llm.model", "GLM-4.5-Air-Q4_K_M")],
    );
    assert_one_value_within(
        glm_duration,
        &schema::LAUNCH_DURATION_BOUNDARIES_MS,
        run.glm_launch_ms,
    );
}

#[tokio::test]
async fn unloads_and_exits_count_the_model_as_launched_with_its_uptime() {
    let run = Lifecycle::run().await;
    let points = &run.points;
    let u = one(
        points,
        schema::UNLOAD_TOTAL,
        &[("mesh_llm.model", "GLM-4.5-Air-Q4_K_M")],
    );
    assert_eq!(u.attr("mesh_llm.launch_kind"), Some("runtime_load"));
    let e = one(
        points,
        schema::EXIT_UNEXPECTED_TOTAL,
        &[("mesh_llm.model", "phi-4-Q8_0")],
    );
    assert_eq!(e.attr("mesh_llm.context_bucket"), Some(">128k"));
    let uptimes = of(points, schema::UPTIME_S);
    assert_eq!(uptimes.len(), 2, "{uptimes:#?}");
    for (model, bounds) in [
        ("GLM-4.5-Air-Q4_K_M", run.glm_uptime_s),
        ("phi-4-Q8_0", run.phi_uptime_s),
    ] {
        let p = one(points, schema::UPTIME_S, &[("mesh_llm.model", model)]);
        assert_one_value_within(p, &schema::UPTIME_BOUNDARIES_S, bounds);
    }
}

#[tokio::test]
async fn the_gauges_show_only_the_model_still_loaded() {
    let run = Lifecycle::run().await;
    let points = &run.points;
    let loaded = one(points, schema::LOADED_MODELS, &[]);
    assert_eq!(loaded.value, 1.0);
    assert_eq!(loaded.attr("mesh_llm.model"), None, "node-wide gauge");
    assert_eq!(loaded.attr("mesh_llm.gpu_count"), Some("2"));
    assert_eq!(loaded.attr("mesh_llm.backend_device"), Some("cuda"));
    assert_eq!(loaded.attr("mesh_llm.gpu_name"), None, "two different GPUs");
    assert_eq!(
        loaded.attr("mesh_llm.gpu_stable_id"),
        None,
        "a node has no single GPU id"
    );
    let model_loaded = of(points, schema::MODEL_LOADED);
    assert_eq!(model_loaded.len(), 1, "{model_loaded:#?}");
    assert_eq!(
        model_loaded[0].attr("mesh_llm.model"),
        Some("Qwen3-8B-Q4_K_M")
    );
    assert_eq!(model_loaded[0].value, 1.0);
    let ctx = of(points, schema::MODEL_CONTEXT_LENGTH);
    assert_eq!(ctx.len(), 1);
    assert_eq!(ctx[0].value, 32768.0);
    assert_eq!(ctx[0].attr("mesh_llm.context_bucket"), Some("16k_32k"));
}

#[tokio::test]
async fn unloading_the_last_model_drops_its_gauge_series() {
    let mut run = Lifecycle::run().await;
    let points = run.unload_the_last_model().await;
    assert!(of(&points, schema::MODEL_LOADED).is_empty(), "{points:#?}");
    assert!(of(&points, schema::MODEL_CONTEXT_LENGTH).is_empty());
    assert_eq!(one(&points, schema::LOADED_MODELS, &[]).value, 0.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 2.0);
}

#[tokio::test]
async fn exports_to_a_healthy_collector_leave_a_clean_status_and_shutdown_flushes() {
    let mut run = Lifecycle::run().await;
    run.unload_the_last_model().await;
    let status = run.guard.status();
    assert!(status.enabled);
    assert!(status.exports_ok >= 2);
    assert_eq!(status.exports_failed, 0);
    assert_eq!(status.events_dropped, 0);
    let report = run.guard.shutdown();
    assert!(report.drained && report.flushed, "{report:?}");
}

#[tokio::test]
async fn a_cancelled_launch_is_recorded_as_other_and_nothing_drifts() {
    let (_serial, receiver, guard) = exporting("").await;

    let spec = Spec::new(7, "/m/slow.gguf", 4096);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        load(&spec, Duration::from_secs(30), None),
    )
    .await;
    assert!(cancelled.is_err(), "the launch future was dropped");

    assert!(guard.flush(FLUSH));
    let points = receiver.latest_points();
    assert_cancelled_launch(&points, "slow");
    assert!(of(&points, schema::MODEL_LOADED).is_empty());
    drop(guard);
}

#[tokio::test]
async fn exit_of_a_model_survey_never_saw_counts_without_uptime() {
    let (_serial, receiver, guard) = exporting("").await;
    crashed(&Running::new(99, "/m/unknown.gguf"));
    survey::record_unexpected_exit(&Running::new(98, "/m/other.gguf"));
    assert!(guard.flush(FLUSH));
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::EXIT_UNEXPECTED_TOTAL), 2.0);
    one(
        &points,
        schema::EXIT_UNEXPECTED_TOTAL,
        &[("mesh_llm.model", "unknown")],
    );
    assert!(
        of(&points, schema::UPTIME_S).is_empty(),
        "uptime unknown: no histogram point"
    );
    drop(guard);
}

/// An unload during which the watcher reports the backend's exit.
#[survey::unload(model = running)]
async fn unload_racing_an_exit(running: Running) -> Result<(), std::io::Error> {
    crashed(&running);
    Ok(())
}

#[tokio::test]
async fn an_exit_during_an_unload_is_counted_once() {
    let (_serial, receiver, guard) = exporting("").await;
    // Launched; its backend dies while the host is unloading it.
    let running = load(&Spec::new(1, "/m/raced.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    unload_racing_an_exit(running).await.unwrap();
    // Never launched under survey: counted, with no uptime.
    unload(Running::new(2, "/m/stranger.gguf")).await.unwrap();
    assert!(guard.flush(FLUSH));
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::EXIT_UNEXPECTED_TOTAL), 1.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 1.0);
    one(
        &points,
        schema::UNLOAD_TOTAL,
        &[("mesh_llm.model", "stranger")],
    );
    let uptimes = of(&points, schema::UPTIME_S);
    assert_eq!(uptimes.len(), 1, "only the exit had a known uptime");
    assert_eq!(uptimes[0].attr("mesh_llm.model"), Some("raced"));
    drop(guard);
}
