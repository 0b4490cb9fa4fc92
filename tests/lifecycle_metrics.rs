//! Annotated launches, failures, unloads and exits arrive at a real OTLP/HTTP
//! receiver with the right names, units, values and attributes.

mod support;

use std::time::Duration;

use support::*;
use survey::schema;

const FLUSH: Duration = Duration::from_secs(10);

#[tokio::test]
async fn every_lifecycle_event_arrives_with_its_attributes() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    let guard = start(&receiver.endpoint(), "");

    // A startup launch that stays loaded, on a path with directories.
    let kept = Spec::new(1, "/home/alice/models/Qwen3-8B-Q4_K_M.gguf", 32768);
    let kept_running = launch_as(survey::LaunchKind::Startup, &kept).await.unwrap();
    // A runtime load that is unloaded later.
    let unloaded = Spec::new(2, "/srv/m/GLM-4.5-Air-Q4_K_M-00001-of-00003.gguf", 8192);
    let unloaded_running = load(&unloaded, Duration::from_millis(30), None)
        .await
        .unwrap();
    // A runtime load whose backend crashes.
    let crashing = Spec::new(3, "/srv/m/phi-4-Q8_0.gguf", 200_000);
    let crashing_running = load(&crashing, Duration::ZERO, None).await.unwrap();
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
    unload(unloaded_running).await.unwrap();
    crashed(&crashing_running);

    assert!(guard.flush(FLUSH), "{}", guard.status());
    let requests = receiver.requests();
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
    let points = receiver.latest_points();

    // Resource: service identity, the process's random instance id and the
    // SDK; nothing else.
    let resource = requests.last().unwrap().resource_attributes();
    let keys: Vec<&str> = resource.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "service.instance.id",
            "service.name",
            "service.version",
            "telemetry.sdk.language",
            "telemetry.sdk.name",
            "telemetry.sdk.version"
        ]
    );
    assert!(schema::is_uuid_v4(&resource["service.instance.id"]));
    assert_eq!(resource["service.name"], "mesh-llm");
    assert_eq!(resource["service.version"], "9.8.7");

    // Units and kinds of all ten metrics.
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
        let found = of(&points, metric);
        assert!(!found.is_empty(), "{metric} missing");
        for p in found {
            assert_eq!((p.kind, p.unit.as_str()), (kind, unit), "{metric}");
        }
    }
    let names: std::collections::BTreeSet<&str> =
        points.iter().map(|p| p.metric.as_str()).collect();
    assert_eq!(names.len(), 10, "exactly the ten schema metrics: {names:?}");

    // Counters.
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 11.0);
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 3.0);
    assert_eq!(total(&points, schema::LAUNCH_FAILURE_TOTAL), 8.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 1.0);
    assert_eq!(total(&points, schema::EXIT_UNEXPECTED_TOTAL), 1.0);

    let startup = one(
        &points,
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

    // Split suffix and directories are gone; the runtime load kind is there.
    one(
        &points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[
            ("mesh_llm.model", "GLM-4.5-Air-Q4_K_M"),
            ("mesh_llm.launch_kind", "runtime_load"),
            ("mesh_llm.context_bucket", "<=8k"),
        ],
    );

    // One failure per reason, each with its reason and no other.
    for (i, error) in LaunchError::ALL.into_iter().enumerate() {
        let reason = survey::FailureReason::failure_reason(&error).as_str();
        let p = one(
            &points,
            schema::LAUNCH_FAILURE_TOTAL,
            &[("mesh_llm.model", &format!("fail{i}"))],
        );
        assert_eq!(p.attr("mesh_llm.failure_reason"), Some(reason));
        assert_eq!(p.value, 1.0);
        let d = one(
            &points,
            schema::LAUNCH_DURATION_MS,
            &[
                ("mesh_llm.model", &format!("fail{i}")),
                ("mesh_llm.failure_reason", reason),
            ],
        );
        assert_eq!(d.value, 1.0);
    }
    for p in of(&points, schema::LAUNCH_SUCCESS_TOTAL) {
        assert_eq!(p.attr("mesh_llm.failure_reason"), None);
    }

    // Launch duration histogram: boundaries from the schema; the 30 ms sleep is in it.
    let glm_duration = one(
        &points,
        schema::LAUNCH_DURATION_MS,
        &[("mesh_llm.model", "GLM-4.5-Air-Q4_K_M")],
    );
    assert_eq!(glm_duration.bounds, schema::LAUNCH_DURATION_BOUNDARIES_MS);
    assert_eq!(glm_duration.value, 1.0);
    assert!(glm_duration.sum.unwrap() >= 30.0, "{glm_duration:?}");

    // Unload and exit: counted with the model as launched, uptime recorded.
    let u = one(
        &points,
        schema::UNLOAD_TOTAL,
        &[("mesh_llm.model", "GLM-4.5-Air-Q4_K_M")],
    );
    assert_eq!(u.attr("mesh_llm.launch_kind"), Some("runtime_load"));
    let e = one(
        &points,
        schema::EXIT_UNEXPECTED_TOTAL,
        &[("mesh_llm.model", "phi-4-Q8_0")],
    );
    assert_eq!(e.attr("mesh_llm.context_bucket"), Some(">128k"));
    let uptimes = of(&points, schema::UPTIME_S);
    assert_eq!(uptimes.len(), 2, "{uptimes:#?}");
    for p in uptimes {
        assert_eq!(p.bounds, schema::UPTIME_BOUNDARIES_S);
        assert_eq!(p.value, 1.0);
        assert!(p.sum.unwrap() >= 0.0);
    }

    // Gauges: only the model still loaded.
    let loaded = one(&points, schema::LOADED_MODELS, &[]);
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
    let model_loaded = of(&points, schema::MODEL_LOADED);
    assert_eq!(model_loaded.len(), 1, "{model_loaded:#?}");
    assert_eq!(
        model_loaded[0].attr("mesh_llm.model"),
        Some("Qwen3-8B-Q4_K_M")
    );
    assert_eq!(model_loaded[0].value, 1.0);
    let ctx = of(&points, schema::MODEL_CONTEXT_LENGTH);
    assert_eq!(ctx.len(), 1);
    assert_eq!(ctx[0].value, 32768.0);
    assert_eq!(ctx[0].attr("mesh_llm.context_bucket"), Some("16k_32k"));

    // Unloading the last model drops its gauge series.
    unload(kept_running).await.unwrap();
    assert!(guard.flush(FLUSH));
    let points = receiver.latest_points();
    assert!(of(&points, schema::MODEL_LOADED).is_empty(), "{points:#?}");
    assert!(of(&points, schema::MODEL_CONTEXT_LENGTH).is_empty());
    assert_eq!(one(&points, schema::LOADED_MODELS, &[]).value, 0.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 2.0);

    let status = guard.status();
    assert!(status.enabled);
    assert!(status.exports_ok >= 2);
    assert_eq!(status.exports_failed, 0);
    assert_eq!(status.events_dropped, 0);
    let report = guard.shutdown();
    assert!(report.drained && report.flushed, "{report:?}");
}

#[tokio::test]
async fn a_cancelled_launch_is_recorded_as_other_and_nothing_drifts() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    let guard = start(&receiver.endpoint(), "");

    let spec = Spec::new(7, "/m/slow.gguf", 4096);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        load(&spec, Duration::from_secs(30), None),
    )
    .await;
    assert!(cancelled.is_err(), "the launch future was dropped");

    assert!(guard.flush(FLUSH));
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 1.0);
    let failure = one(
        &points,
        schema::LAUNCH_FAILURE_TOTAL,
        &[("mesh_llm.model", "slow")],
    );
    assert_eq!(failure.attr("mesh_llm.failure_reason"), Some("other"));
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 0.0);
    assert_eq!(one(&points, schema::LOADED_MODELS, &[]).value, 0.0);
    assert!(of(&points, schema::MODEL_LOADED).is_empty());
    drop(guard);
}

#[tokio::test]
async fn exit_of_a_model_survey_never_saw_counts_without_uptime() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    let guard = start(&receiver.endpoint(), "");
    crashed(&Running {
        slot: 99,
        path: "/m/unknown.gguf".into(),
    });
    survey::record_unexpected_exit(&Running {
        slot: 98,
        path: "/m/other.gguf".into(),
    });
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
    let _serial = serial().await;
    let receiver = Receiver::start();
    let guard = start(&receiver.endpoint(), "");
    // Launched; its backend dies while the host is unloading it.
    let running = load(&Spec::new(1, "/m/raced.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    unload_racing_an_exit(running).await.unwrap();
    // Never launched under survey: counted, with no uptime.
    unload(Running {
        slot: 2,
        path: "/m/stranger.gguf".into(),
    })
    .await
    .unwrap();
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
