//! Standard `OTEL_*` variables in the real process environment, where
//! `opentelemetry-otlp` reads some of them by itself: the config still wins.
//! One test in its own binary, since the environment is process-wide.

use std::time::Duration;

use survey::schema;
use survey_test_support::host::*;
use survey_test_support::*;

#[tokio::test]
async fn config_wins_over_the_process_environment() {
    let _serial = serial().await;
    // SAFETY: this binary runs this single test; nothing else reads the
    // environment concurrently.
    unsafe {
        std::env::set_var(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20ENV,x-env=1",
        );
        std::env::set_var(
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "authorization=Bearer%20ENVM,x-env=2",
        );
        std::env::set_var("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
        std::env::set_var("OTEL_SERVICE_NAME", "from-env");
        std::env::set_var(
            "OTEL_RESOURCE_ATTRIBUTES",
            "host.name=CANARYHOST,secret=CANARYRES",
        );
    }
    let receiver = Receiver::start();
    let config = telemetry(&format!(
        "enabled = true\nendpoint = \"{}\"\nexport_interval_secs = 60\n\
         compression = \"none\"\nprotocol = \"http/protobuf\"\n\
         headers = {{ \"Authorization\" = \"Bearer CONFIG\" }}",
        receiver.endpoint()
    ));
    let guard = survey::Setup::new(&config).hardware(two_gpus()).start();
    assert!(guard.is_enabled(), "{}", guard.status());
    load(&Spec::new(1, "/m/a.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    assert!(guard.flush(Duration::from_secs(10)));
    let request = receiver.requests().pop().unwrap();
    // Config header wins on the same name; the env-only header is kept.
    assert_eq!(request.header("authorization"), Some("Bearer CONFIG"));
    assert_eq!(request.header("x-env"), Some("2"));
    // Config compression and protocol win.
    assert_eq!(request.header("content-encoding"), None);
    assert_eq!(
        request.header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(total(&request.points(), schema::LAUNCH_TOTAL), 1.0);
    // OTEL_SERVICE_NAME applies (the config has none); resource attributes
    // from the environment never do.
    let resource = request.resource_attributes();
    assert_eq!(resource["service.name"], "from-env");
    let raw = String::from_utf8_lossy(&request.raw_body);
    assert!(!raw.contains("CANARY"));
    assert!(!resource.contains_key("host.name"));
    drop(guard);

    // Without a config endpoint, the environment supplies it once opted in;
    // the base endpoint gets /v1/metrics.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
    }
    let guard = survey::Setup::new(&telemetry("export_interval_secs = 60"))
        .plugin_enabled(Some(true))
        .hardware(two_gpus())
        .start();
    assert!(guard.is_enabled(), "{}", guard.status());
    let before = receiver.requests().len();
    load(&Spec::new(2, "/m/b.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    assert!(guard.flush(Duration::from_secs(10)));
    let requests = receiver.requests();
    let request = &requests[before..].last().unwrap();
    assert_eq!(request.path, "/v1/metrics");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), Some("Bearer ENVM"));
    drop(guard);

    // Ambient variables alone never opt a node in.
    let guard = survey::Setup::new(&survey::TelemetryConfig::default())
        .hardware(two_gpus())
        .start();
    assert!(!guard.is_enabled());
    assert_eq!(
        guard.status().disabled_reason,
        Some(survey::DisabledReason::NotOptedIn)
    );
}
