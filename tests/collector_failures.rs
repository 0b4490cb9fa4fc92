//! A collector that is down, refuses, answers 5xx or 429, or never answers:
//! instrumented functions return their own results at once, nothing panics,
//! shutdown keeps its bound, and once the collector is back the cumulative
//! counts are exact.

use std::time::{Duration, Instant};

use survey::schema;
use survey_test_support::host::*;
use survey_test_support::*;

/// Runs a fixed workload: 3 successes (one unloaded, one crashed), 2 failures.
async fn workload(round: u64) {
    let base = round * 10;
    let a = load(
        &Spec::new(base + 1, "/m/alpha.gguf", 4096),
        Duration::ZERO,
        None,
    )
    .await
    .expect("own Ok comes back");
    let b = load(
        &Spec::new(base + 2, "/m/beta.gguf", 4096),
        Duration::ZERO,
        None,
    )
    .await
    .expect("own Ok comes back");
    let _c = load(
        &Spec::new(base + 3, "/m/gamma.gguf", 4096),
        Duration::ZERO,
        None,
    )
    .await
    .expect("own Ok comes back");
    for error in [LaunchError::HealthTimeout, LaunchError::Spawn] {
        let result = load(
            &Spec::new(base + 4, "/m/delta.gguf", 4096),
            Duration::ZERO,
            Some(error),
        )
        .await;
        assert_eq!(result.unwrap_err(), error, "own Err comes back");
    }
    unload(a).await.expect("own Ok comes back");
    crashed(&b);
}

/// Exact totals after `rounds` workloads.
fn assert_totals(points: &[Point], rounds: f64) {
    assert_eq!(
        total(points, schema::LAUNCH_TOTAL),
        5.0 * rounds,
        "{points:#?}"
    );
    assert_eq!(total(points, schema::LAUNCH_SUCCESS_TOTAL), 3.0 * rounds);
    assert_eq!(total(points, schema::LAUNCH_FAILURE_TOTAL), 2.0 * rounds);
    assert_eq!(total(points, schema::UNLOAD_TOTAL), rounds);
    assert_eq!(total(points, schema::EXIT_UNEXPECTED_TOTAL), rounds);
    assert_eq!(one(points, schema::LOADED_MODELS, &[]).value, rounds);
}

const FAST_EXPORT: &str =
    "export_interval_secs = 0.2\ntimeout_secs = 0.5\nshutdown_timeout_secs = 1.5";

#[tokio::test]
async fn collector_down_then_back_loses_nothing() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    let addr = receiver.addr();
    let endpoint = receiver.endpoint();
    receiver.stop(); // the port is closed: connection refused

    let guard = start(&endpoint, FAST_EXPORT);
    workload(1).await;
    workload(2).await;
    // Several exports fail while the collector is down.
    let status = wait_until_async("two failed exports", Duration::from_secs(10), || {
        let status = guard.status();
        (status.exports_failed >= 2).then_some(status)
    })
    .await;
    assert_eq!(status.exports_ok, 0);
    assert_eq!(
        status.last_failure.map(|f| f.problem),
        Some(survey::ExportProblem::ConnectionRefused)
    );

    let receiver = Receiver::start_on(addr).expect("the port comes back");
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| r
            .iter()
            .any(|r| r.answered == 200)),
        "a periodic export reaches the collector once it is back"
    );
    assert_totals(&receiver.latest_points(), 2.0);
    wait_until_async(
        "an export counted as delivered",
        Duration::from_secs(10),
        || (guard.status().exports_ok >= 1).then_some(()),
    )
    .await;
    let status = guard.status();
    assert_eq!(status.failing_in_a_row, 0, "{status}");
    assert!(
        status
            .to_string()
            .contains("(since recovered): connection refused"),
        "the failure is shown as past: {status}"
    );
    let report = guard.shutdown();
    assert!(report.flushed, "{report:?}");
}

#[tokio::test]
async fn collector_answering_503_then_recovering_loses_nothing() {
    let (_serial, receiver, guard) = exporting_to(Mode::Status(503, None), FAST_EXPORT).await;
    workload(1).await;
    assert!(receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 4));
    // 503 is retryable: one export is tried more than once.
    let status = wait_until_async("a failed export", Duration::from_secs(10), || {
        let status = guard.status();
        (status.exports_failed >= 1).then_some(status)
    })
    .await;
    assert_eq!(
        status.last_failure.map(|f| f.problem),
        Some(survey::ExportProblem::HttpStatus(503))
    );
    workload(2).await;

    receiver.set_mode(Mode::Accept);
    assert!(guard.flush(Duration::from_secs(10)));
    assert_totals(&receiver.latest_points(), 2.0);
    for request in receiver.requests() {
        assert_eq!(request.path, "/v1/metrics");
    }
    drop(guard);
}

#[tokio::test]
async fn collector_answering_429_is_retried_after_its_delay() {
    let (_serial, receiver, guard) = exporting_to(
        Mode::Status(429, Some("0".into())),
        "timeout_secs = 5\nshutdown_timeout_secs = 5",
    )
    .await;
    workload(1).await;
    // Each flush retries the throttled export within its budget.
    assert!(guard.flush(Duration::from_secs(10)));
    let throttled = receiver.requests().len();
    assert!(throttled >= 2, "a 429 is retried, got {throttled} requests");
    assert!(guard.status().exports_failed >= 1);

    receiver.set_mode(Mode::Accept);
    assert!(guard.flush(Duration::from_secs(10)));
    assert_totals(&receiver.latest_points(), 1.0);
    drop(guard);
}

#[tokio::test]
async fn collector_dropping_connections_is_survived() {
    let (_serial, receiver, guard) = exporting_to(Mode::Drop, FAST_EXPORT).await;
    workload(1).await;
    wait_until_async("a failed export", Duration::from_secs(10), || {
        (guard.status().exports_failed >= 1).then_some(())
    })
    .await;
    receiver.set_mode(Mode::Accept);
    assert!(guard.flush(Duration::from_secs(10)));
    assert_totals(&receiver.latest_points(), 1.0);
    drop(guard);
}

#[tokio::test]
async fn collector_that_never_answers_blocks_nothing_and_shutdown_keeps_its_bound() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Hang);
    // Exports may hang for 30 s; shutdown may take 1 s.
    let guard = start(
        &receiver.endpoint(),
        "export_interval_secs = 60\ntimeout_secs = 30\nshutdown_timeout_secs = 1",
    );
    // Start an export and leave it stuck in the collector.
    assert!(
        !guard.flush(Duration::from_millis(200)),
        "the export cannot finish"
    );
    assert!(receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty()));

    // Instrumented calls finish while the export hangs.
    let started = Instant::now();
    workload(1).await;
    let workload_took = started.elapsed();
    assert!(
        workload_took < Duration::from_secs(5),
        "instrumented calls waited on the hung export: {workload_took:?}"
    );

    let report = guard.shutdown();
    assert!(
        !report.flushed,
        "the final export cannot finish: {report:?}"
    );
    assert!(
        report.elapsed < Duration::from_millis(2500),
        "shutdown exceeded its 1 s bound: {report:?}"
    );
    // Survey is off now; instrumented calls still work.
    assert!(!survey::status().enabled);
    workload(2).await;
    receiver.set_mode(Mode::Accept);
}

#[tokio::test]
async fn unreachable_tls_endpoint_is_reported_not_fatal() {
    let _serial = serial().await;
    // A plain-HTTP receiver behind an https:// URL: the TLS handshake fails.
    let receiver = Receiver::start();
    let endpoint = format!("https://{}", receiver.addr());
    let guard = start(&endpoint, "timeout_secs = 2\nshutdown_timeout_secs = 2");
    workload(1).await;
    assert!(guard.flush(Duration::from_secs(10)));
    let status = guard.status();
    assert!(status.exports_failed >= 1, "{status}");
    assert_eq!(status.exports_ok, 0);
    // The request never reached HTTP: nothing was recorded as a request.
    assert!(receiver.requests().is_empty());
    drop(guard);
}
