//! What goes over the wire: protobuf or JSON, gzip or not, configured headers,
//! and nothing but `POST /v1/metrics`.

use std::time::Duration;

use survey::schema;
use survey_test_support::host::*;
use survey_test_support::*;

const FLUSH: Duration = Duration::from_secs(10);

#[tokio::test]
async fn json_protocol_decodes_with_the_official_types() {
    let (_serial, receiver, guard) = exporting("protocol = \"http/json\"").await;
    one_launch().await;
    assert!(guard.flush(FLUSH));
    let request = receiver.requests().pop().unwrap();
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    assert!(request.decode_error.is_none(), "{:?}", request.decode_error);
    let points = request.points();
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 1.0);
    one(
        &points,
        schema::MODEL_CONTEXT_LENGTH,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );
    drop(guard);
}

#[tokio::test]
async fn gzip_is_the_default_and_can_be_turned_off() {
    let (_serial, receiver, guard) = exporting("").await;
    one_launch().await;
    assert!(guard.flush(FLUSH));
    let request = receiver.requests().pop().unwrap();
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    assert_eq!(&request.raw_body[..2], &[0x1f, 0x8b], "gzip magic bytes");
    drop(guard);

    let receiver = Receiver::start();
    let guard = start(&receiver.endpoint(), "compression = \"none\"");
    one_launch().await;
    assert!(guard.flush(FLUSH));
    let request = receiver.requests().pop().unwrap();
    assert_eq!(request.header("content-encoding"), None);
    assert_eq!(
        request.header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(total(&request.points(), schema::LAUNCH_TOTAL), 1.0);
    drop(guard);
}

#[tokio::test]
async fn configured_headers_arrive_and_only_v1_metrics_is_requested() {
    let (_serial, receiver, guard) =
        exporting("headers = { \"authorization\" = \"Bearer TOKEN\", \"X-Tenant\" = \"lab\" }")
            .await;
    one_launch().await;
    assert!(guard.flush(FLUSH));
    unload(Running::new(1, "x")).await.unwrap();
    assert!(guard.flush(FLUSH));
    let requests = receiver.requests();
    assert!(requests.len() >= 2);
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/v1/metrics")
        );
        assert_eq!(request.header("authorization"), Some("Bearer TOKEN"));
        assert_eq!(request.header("x-tenant"), Some("lab"));
    }
    drop(guard);
}

#[tokio::test]
async fn a_metrics_endpoint_is_used_exactly_as_given() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    let config = telemetry(&format!(
        "enabled = true\nexport_interval_secs = 60\n[metrics]\nendpoint = \"{}/custom/path\"",
        receiver.endpoint()
    ));
    let guard = survey::Setup::new(&config)
        .env([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")])
        .hardware(two_gpus())
        .start();
    one_launch().await;
    assert!(guard.flush(FLUSH));
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.path == "/custom/path"));
    drop(guard);
}

#[tokio::test]
async fn disabled_survey_sends_nothing_and_changes_nothing() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    let config = telemetry(&format!(
        "enabled = false\nendpoint = \"{}\"\nexport_interval_secs = 0.05",
        receiver.endpoint()
    ));
    let guard = survey::Setup::new(&config).hardware(two_gpus()).start();
    assert!(!guard.is_enabled());
    let status = guard.status();
    assert_eq!(
        status.disabled_reason,
        Some(survey::DisabledReason::SwitchedOff("telemetry.enabled"))
    );
    assert_eq!(survey::status(), status);
    let running = load(&Spec::new(1, "/m/a.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    let failed = load(
        &Spec::new(2, "/m/b.gguf", 4096),
        Duration::ZERO,
        Some(LaunchError::Spawn),
    )
    .await;
    assert_eq!(failed.unwrap_err(), LaunchError::Spawn);
    crashed(&running);
    unload(running).await.unwrap();
    assert!(!guard.flush(Duration::from_millis(100)));
    std::thread::sleep(Duration::from_millis(200));
    assert!(receiver.requests().is_empty());
    let report = guard.shutdown();
    assert_eq!(report.elapsed, Duration::ZERO);
}
