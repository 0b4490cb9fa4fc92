//! What a person running a node sees: the precise cause of failing exports
//! in `Status` and in the host's log (one warning, one line on recovery),
//! the content of the last export exactly as the collector decoded it, the
//! local mode that sends nothing, and series resets that stop exporting
//! models that ended without losing a count.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use survey::sent::ExportOutcome;
use survey::{ExportProblem, schema};
use survey_test_support::host::*;
use survey_test_support::*;

/// An export a second with a second to answer: a loopback collector that
/// answers does so in time on slow machines too.
const FAST: &str = "export_interval_secs = 1\ntimeout_secs = 1\nshutdown_timeout_secs = 1";

/// Waits for a failed export and returns its cause.
async fn first_problem(guard: &survey::SurveyGuard) -> ExportProblem {
    wait_until_async("a failed export", Duration::from_secs(10), || {
        guard.status().last_failure.map(|f| f.problem)
    })
    .await
}

#[tokio::test]
async fn a_host_that_does_not_resolve_is_named_as_such() {
    let _serial = serial().await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let resolver = {
        let asked = asked.clone();
        Box::new(move |host: &str| {
            asked.lock().unwrap().push(host.to_string());
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such host (injected)",
            ))
        })
    };
    let guard = started(setup("http://collector.invalid:4318", FAST).resolver(resolver));
    one_launch().await;
    assert_eq!(first_problem(&guard).await, ExportProblem::NameResolution);
    assert_eq!(asked.lock().unwrap()[0], "collector.invalid");
    let text = guard.status().to_string();
    assert!(
        text.contains("cannot resolve the collector's host name"),
        "{text}"
    );
}

#[tokio::test]
async fn a_closed_port_reads_connection_refused() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    let endpoint = receiver.endpoint();
    receiver.stop();
    let guard = start(&endpoint, FAST);
    one_launch().await;
    assert_eq!(
        first_problem(&guard).await,
        ExportProblem::ConnectionRefused
    );
}

#[tokio::test]
async fn a_collector_that_never_answers_reads_timed_out() {
    let (_serial, receiver, guard) =
        exporting_to(Mode::Hang, "export_interval_secs = 0.5\ntimeout_secs = 0.2").await;
    one_launch().await;
    assert_eq!(first_problem(&guard).await, ExportProblem::TimedOut);
    drop(guard);
    receiver.set_mode(Mode::Accept);
}

#[tokio::test]
async fn an_error_status_is_named_without_the_response_body() {
    let (_serial, _receiver, guard) = exporting_to(Mode::Status(500, None), FAST).await;
    one_launch().await;
    assert_eq!(first_problem(&guard).await, ExportProblem::HttpStatus(500));
    let text = guard.status().to_string();
    assert!(text.contains("HTTP 500"), "{text}");
    assert!(!text.contains("RESPONSE-BODY-CANARY"), "{text}");
}

#[tokio::test]
async fn points_rejected_in_a_partial_success_are_a_failure() {
    let _serial = serial().await;
    for protocol in ["http/protobuf", "http/json"] {
        let receiver = Receiver::start();
        receiver.set_mode(Mode::Reject(3));
        let guard = start(
            &receiver.endpoint(),
            &format!("{FAST}\nprotocol = \"{protocol}\""),
        );
        one_launch().await;
        assert_eq!(first_problem(&guard).await, ExportProblem::Rejected(3));
        let status = guard.status();
        assert_eq!(status.exports_ok, 0, "{status}");
        assert!(!status.to_string().contains("RESPONSE-BODY-CANARY"));
        assert_eq!(
            guard.last_export().map(|e| e.outcome),
            Some(ExportOutcome::Failed)
        );
        drop(guard);
    }
}

/// Every log line of this test binary, as the host's log would hold them.
fn log_lines() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let log = log.clone();
            move || LogWriter(log.clone())
        };
        tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_env_filter("survey=info")
            .init();
        log
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_log_warns_once_when_exports_fail_and_once_when_they_recover() {
    let _serial = serial().await;
    let log = log_lines();
    let logged_before = log.lock().unwrap().len();
    let receiver = Receiver::start();
    let (addr, endpoint) = (receiver.addr(), receiver.endpoint());
    receiver.stop();
    let guard = start(&endpoint, FAST);
    one_launch().await;
    wait_until_async("three failed exports", Duration::from_secs(20), || {
        (guard.status().exports_failed >= 3).then_some(())
    })
    .await;
    let receiver = Receiver::start_on(addr).unwrap();
    // The first export after the recovery is sent; the next, unchanged,
    // is left out (a heartbeat is an hour away): both after the log line.
    wait_until_async("a successful export", Duration::from_secs(20), || {
        let status = guard.status();
        (status.exports_ok >= 1 && status.exports_unchanged >= 1).then_some(())
    })
    .await;
    let failed = guard.status().exports_failed;
    drop(guard);
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    let ours: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(&format!("exports to http://127.0.0.1:{}", addr.port())))
        .collect();
    assert_outage_logged(&ours, &format!("succeed again after {failed} failure(s)"));
    // The exports left out after it: one line says so, not one each.
    let unchanged: Vec<&str> = text[logged_before..]
        .lines()
        .filter(|line| line.contains("export unchanged since "))
        .collect();
    assert_eq!(unchanged.len(), 1, "{unchanged:#?}");
    assert!(unchanged[0].contains("INFO"), "{}", unchanged[0]);
    assert!(
        unchanged[0].contains(
            " UTC, not sent; heartbeat in 59 min: an unchanged export is sent at most every 60 min"
        ) || unchanged[0].contains(" UTC, not sent; heartbeat in 60 min:"),
        "{}",
        unchanged[0]
    );
    drop(receiver);
}

#[tokio::test]
async fn the_last_export_is_what_the_collector_decoded() {
    let (_serial, receiver, guard) = exporting("export_interval_secs = 60").await;
    let a = load(&qwen3(1), Duration::from_millis(5), None)
        .await
        .unwrap();
    let _b = load(
        &Spec::new(2, "/m/gemma-3-4b.gguf", 8192),
        Duration::ZERO,
        None,
    )
    .await
    .unwrap();
    let _ = load(
        &Spec::new(3, "/m/llama.gguf", 4096),
        Duration::ZERO,
        Some(LaunchError::HealthTimeout),
    )
    .await;
    unload(a).await.unwrap();
    assert!(guard.flush(Duration::from_secs(10)));

    let kept = guard.last_export().expect("an export was made");
    assert_eq!(kept.outcome, ExportOutcome::Sent);
    assert_eq!(survey::last_export(), Some(kept.clone()));
    let requests = receiver.requests();
    let last = requests.last().expect("a request");
    let sent = sorted_lines(kept.rows.iter().map(Point::from_sent));
    assert_eq!(sent, sorted_lines(last.points()));
    assert!(sent.len() >= 10, "{sent:#?}");
    let resource: BTreeMap<String, String> = kept
        .resource
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(resource, last.resource_attributes());

    // The JSON rows are flat: a value, or count, sum, bounds and bucket counts.
    let json = serde_json::to_value(&kept.rows).unwrap();
    for row in json.as_array().unwrap() {
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        match row["kind"].as_str().unwrap() {
            "histogram" => assert_eq!(
                keys,
                [
                    "attributes",
                    "bounds",
                    "bucket_counts",
                    "count",
                    "kind",
                    "metric",
                    "sum",
                    "unit"
                ]
            ),
            _ => assert_eq!(keys, ["attributes", "kind", "metric", "unit", "value"]),
        }
    }
}

#[tokio::test]
async fn local_mode_records_everything_and_sends_nothing() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    // The endpoint names a host that the resolver maps to the receiver:
    // were anything sent, the lookup would be counted and the request would
    // arrive.
    let lookups = Arc::new(AtomicUsize::new(0));
    let resolver = {
        let (lookups, addr) = (lookups.clone(), receiver.addr());
        move |_: &str| {
            lookups.fetch_add(1, Ordering::SeqCst);
            Ok(vec![addr])
        }
    };
    let config = telemetry(&format!(
        "mode = \"local\"\nendpoint = \"http://collector.example:{}\"\n\
         export_interval_secs = 0.1\n",
        receiver.addr().port()
    ));
    let guard = survey::Setup::new(&config)
        .env([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")])
        .hardware(two_gpus())
        .resolver(resolver)
        .start();
    assert!(guard.is_enabled(), "{}", guard.status());
    assert!(guard.status().to_string().contains("nothing is sent"));
    one_launch().await;
    let kept = wait_until_async("a local collection", Duration::from_secs(10), || {
        guard.last_export().filter(|e| {
            e.rows
                .iter()
                .any(|r| r.metric == schema::LAUNCH_SUCCESS_TOTAL)
        })
    })
    .await;
    assert_eq!(kept.outcome, ExportOutcome::Local);
    assert!(guard.flush(Duration::from_secs(5)));
    // Shutdown makes the final collection; it is not sent either.
    drop(guard);
    assert!(receiver.requests().is_empty(), "local mode sent a request");
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        0,
        "local mode resolved a name"
    );

    // A switch set to false still wins over local mode.
    let off = telemetry("mode = \"local\"\nenabled = false\n");
    let guard = survey::Setup::new(&off).env([("OTEL_UNUSED", "")]).start();
    assert!(!guard.is_enabled());
    let guard = survey::Setup::new(&telemetry("mode = \"local\""))
        .plugin_enabled(Some(false))
        .start();
    assert!(!guard.is_enabled());
}

/// Each stream's last value, summed over streams, per model: the
/// collectors' counting rule for cumulative counters, with start times
/// kept to the second as the ClickHouse exporter keeps them (the coarsest
/// any collector tells streams apart by).
fn counts(requests: &[Request], metric: &str) -> HashMap<String, f64> {
    let mut last: HashMap<(String, String, u64), f64> = HashMap::new();
    for request in requests {
        for point in request.points().into_iter().filter(|p| p.metric == metric) {
            let model = point.attr("mesh_llm.model").unwrap_or_default().to_string();
            let stream = (
                model,
                format!("{:?}", point.attributes),
                point.start / 1_000_000_000,
            );
            let value = last.entry(stream).or_insert(0.0);
            *value = value.max(point.value);
        }
    }
    let mut per_model: HashMap<String, f64> = HashMap::new();
    for ((model, _, _), value) in last {
        *per_model.entry(model).or_default() += value;
    }
    per_model
}

fn counted(requests: &[Request], metric: &str, model: &str) -> f64 {
    counts(requests, metric).get(model).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn a_series_reset_stops_exporting_ended_models_and_loses_no_count() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    let guard = start(
        &receiver.endpoint(),
        // Counts the exports after the reset: each is sent.
        "export_interval_secs = 0.1\nseries_reset_secs = 0.3\nheartbeat_secs = 0",
    );
    let ids = |requests: &[Request]| -> Vec<String> {
        requests
            .iter()
            .map(|r| r.resource_attributes()["service.instance.id"].clone())
            .collect()
    };
    let gone = load(&Spec::new(1, "/m/gone.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    let _stays = load(&Spec::new(2, "/m/stays.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    unload(gone).await.unwrap();
    let _ = load(
        &Spec::new(3, "/m/broken.gguf", 4096),
        Duration::ZERO,
        Some(LaunchError::Spawn),
    )
    .await;
    wait_until_async("a series reset", Duration::from_secs(10), || {
        (guard.status().series_resets >= 1).then_some(())
    })
    .await;
    // The next exports hold only what is still loaded.
    let seen = receiver.requests().len();
    assert!(receiver.wait_until(Duration::from_secs(10), |r| r.len() >= seen + 2));
    let requests = receiver.requests();
    let latest = requests.last().unwrap().points();
    assert!(
        latest
            .iter()
            .all(|p| !matches!(p.attr("mesh_llm.model"), Some("gone" | "broken"))),
        "{latest:#?}"
    );
    one(
        &latest,
        schema::MODEL_LOADED,
        &[("mesh_llm.model", "stays")],
    );
    // Every count is still there under the counting rule, once.
    for (metric, model, n) in [
        (schema::LAUNCH_TOTAL, "gone", 1.0),
        (schema::LAUNCH_SUCCESS_TOTAL, "gone", 1.0),
        (schema::UNLOAD_TOTAL, "gone", 1.0),
        (schema::LAUNCH_TOTAL, "stays", 1.0),
        (schema::LAUNCH_FAILURE_TOTAL, "broken", 1.0),
    ] {
        assert_eq!(counted(&requests, metric, model), n, "{metric} {model}");
    }
    // Later events land in the new series and count once too.
    let again = load(&Spec::new(4, "/m/gone.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    unload(again).await.unwrap();
    assert!(guard.flush(Duration::from_secs(5)));
    let requests = receiver.requests();
    assert_eq!(counted(&requests, schema::LAUNCH_TOTAL, "gone"), 2.0);
    assert_eq!(counted(&requests, schema::UNLOAD_TOTAL, "gone"), 2.0);
    let ids = ids(&requests);
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one service.instance.id"
    );
}

#[tokio::test]
async fn hundreds_of_models_never_reach_the_overflow_series() {
    let (_serial, receiver, guard) = exporting("export_interval_secs = 60").await;
    // More distinct models than a reset is due at, each loaded and unloaded.
    for slot in 0..2_500u64 {
        let model = load(
            &Spec::new(slot, &format!("/m/model-{slot}.gguf"), 4096),
            Duration::ZERO,
            None,
        )
        .await
        .unwrap();
        unload(model).await.unwrap();
        if slot % 400 == 399 {
            // An export that succeeds, after which a reset can happen.
            assert!(guard.flush(Duration::from_secs(10)));
        }
    }
    assert!(guard.flush(Duration::from_secs(10)));
    let status = guard.status();
    assert!(status.series_resets >= 1, "{status}");
    let requests = receiver.requests();
    for request in &requests {
        for point in request.points() {
            assert!(
                !point.attributes.contains_key("otel.metric.overflow"),
                "{point:?}"
            );
        }
    }
    let unloads = counts(&requests, schema::UNLOAD_TOTAL);
    assert_eq!(unloads.len(), 2_500);
    assert!(
        unloads.values().all(|n| *n == 1.0),
        "each model counted once"
    );
}
