//! Opt-in inference metrics (`prompt_shape_metrics`), recorded through
//! `survey::record_inference`, as they arrive at a real OTLP/HTTP receiver.

use std::time::Duration;

use survey::schema;
use survey::{Inference, RequestOutcome, Throughput};
use survey_test_support::host::*;
use survey_test_support::*;

const FLUSH: Duration = Duration::from_secs(10);

/// A request answered in full: 700 prompt tokens of which 200 were
/// cached, 500 evaluated in 250 ms (2,000 tokens/s), 64 generated in
/// 1.6 s (40 tokens/s), first token after 300 ms.
fn answered(time_to_first_token: Option<Duration>) -> Inference {
    let inference = Inference::new(RequestOutcome::Ok)
        .prompt_tokens(700)
        .output_tokens(64)
        .prefill(Throughput::new(500, 250.0))
        .decode(Throughput::new(64, 1600.0));
    match time_to_first_token {
        Some(time) => inference.time_to_first_token(time),
        None => inference,
    }
}

/// The inference metrics among `points`.
fn inference_points(points: &[Point]) -> Vec<&Point> {
    points
        .iter()
        .filter(|p| p.metric.starts_with("mesh_llm_inference_"))
        .collect()
}

/// The one bucket of `bounds` holding `value`, as bucket counts of `n`.
fn in_bucket(bounds: &[f64], value: f64, n: u64) -> Vec<u64> {
    let mut counts = vec![0; bounds.len() + 1];
    counts[bounds.iter().take_while(|b| value > **b).count()] = n;
    counts
}

#[tokio::test]
async fn with_the_switch_off_no_inference_metric_is_ever_exported() {
    let (_serial, receiver, guard) = exporting("").await;
    let spec = qwen3(1);
    let running = load(&spec, Duration::ZERO, None).await.unwrap();
    for outcome in RequestOutcome::ALL {
        survey::record_inference(&running, Inference::new(*outcome));
    }
    survey::record_inference(&running, answered(Some(Duration::from_millis(300))));
    assert!(guard.flush(FLUSH), "{}", guard.status());
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 1.0);
    assert!(inference_points(&points).is_empty(), "{points:#?}");
    let status = guard.status();
    assert!(!status.prompt_shape_metrics);
    assert_eq!(status.inference_unloaded, 0);
    // Only the launch's two events reached the recorder.
    assert_eq!(status.events_recorded, 2);
    guard.shutdown();
}

#[tokio::test]
async fn with_the_switch_on_each_request_counts_by_outcome_and_answers_fill_the_histograms() {
    let (_serial, receiver, guard) = exporting("prompt_shape_metrics = true").await;
    assert!(guard.status().prompt_shape_metrics);
    let spec = Spec::new(1, "/home/alice/m/Qwen3-8B-Q4_K_M.gguf", 32768);
    let running = load(&spec, Duration::ZERO, None).await.unwrap();

    // Three whole answers, two streamed ones, one request of each other outcome.
    for _ in 0..3 {
        survey::record_inference(&running, answered(None));
    }
    for _ in 0..2 {
        survey::record_inference(&running, answered(Some(Duration::from_millis(300))));
    }
    for outcome in &RequestOutcome::ALL[1..] {
        // Numbers of a request cut short never reach the histograms.
        survey::record_inference(
            &running,
            Inference::new(*outcome)
                .prompt_tokens(9)
                .decode(Throughput::new(1, 1.0)),
        );
    }
    assert!(guard.flush(FLUSH), "{}", guard.status());
    let points = receiver.latest_points();

    // The attributes are the launch's, without its kind.
    let launch = one(&points, schema::LAUNCH_SUCCESS_TOTAL, &[]);
    let mut expected = launch.attributes.clone();
    expected.remove("mesh_llm.launch_kind");
    assert_eq!(expected["mesh_llm.context_bucket"], "16k_32k");
    assert_eq!(expected["mesh_llm.model"], "Qwen3-8B-Q4_K_M");

    let requests = of(&points, schema::INFERENCE_REQUESTS_TOTAL);
    assert_eq!(requests.len(), RequestOutcome::ALL.len(), "{requests:#?}");
    for p in &requests {
        assert_eq!((p.kind, p.unit.as_str()), (PointKind::Counter, "{request}"));
        let mut attributes = p.attributes.clone();
        let outcome = attributes.remove("mesh_llm.request_outcome").unwrap();
        assert_eq!(attributes, expected);
        let n = if outcome == "ok" { 5.0 } else { 1.0 };
        assert_eq!(p.value, n, "{outcome}");
    }

    let histograms = [
        (schema::INFERENCE_PROMPT_TOKENS, "{token}", 700.0, 5),
        (schema::INFERENCE_OUTPUT_TOKENS, "{token}", 64.0, 5),
        (
            schema::INFERENCE_PREFILL_TOKENS_PER_S,
            "{token}/s",
            2000.0,
            5,
        ),
        (schema::INFERENCE_DECODE_TOKENS_PER_S, "{token}/s", 40.0, 5),
        (schema::INFERENCE_TIME_TO_FIRST_TOKEN_MS, "ms", 300.0, 2),
    ];
    for (metric, unit, value, n) in histograms {
        let p = one(&points, metric, &[]);
        let bounds = schema::metric(metric).unwrap().boundaries;
        assert_eq!((p.kind, p.unit.as_str()), (PointKind::Histogram, unit));
        assert_eq!(
            p.attributes, expected,
            "{metric}: no outcome, no launch kind"
        );
        assert_eq!(p.value, n as f64, "{metric}");
        assert_eq!(p.sum, Some(value * n as f64), "{metric}");
        assert_eq!(p.bounds, bounds, "{metric}");
        assert_eq!(p.bucket_counts, in_bucket(bounds, value, n), "{metric}");
    }
    assert_eq!(
        inference_points(&points).len(),
        RequestOutcome::ALL.len() + 5
    );
    guard.shutdown();
}

#[tokio::test]
async fn records_of_unloaded_models_and_values_out_of_bounds_are_dropped_and_counted() {
    let (_serial, receiver, guard) = exporting("prompt_shape_metrics = true").await;
    let spec = qwen3(1);
    let running = load(&spec, Duration::ZERO, None).await.unwrap();
    let gone = Running {
        slot: 2,
        path: "/m/other.gguf".into(),
    };
    survey::record_inference(&gone, answered(None));
    survey::record_inference(
        &running,
        Inference::new(RequestOutcome::Ok)
            .prompt_tokens(10)
            .decode(Throughput::new(10, 0.0))
            .prefill(Throughput::new(10, f64::NAN))
            .time_to_first_token(Duration::from_secs(2 * 86_400)),
    );
    assert!(guard.flush(FLUSH), "{}", guard.status());
    let status = guard.status();
    assert_eq!(status.inference_unloaded, 1);
    assert_eq!(status.inference_values_rejected, 3);
    assert!(status.to_string().contains("1 records of unloaded models"));

    let points = receiver.latest_points();
    let ok = one(
        &points,
        schema::INFERENCE_REQUESTS_TOTAL,
        &[("mesh_llm.request_outcome", "ok")],
    );
    assert_eq!(ok.value, 1.0, "the request counts; its bad values do not");
    assert_eq!(
        one(&points, schema::INFERENCE_PROMPT_TOKENS, &[]).value,
        1.0
    );
    for metric in [
        schema::INFERENCE_DECODE_TOKENS_PER_S,
        schema::INFERENCE_PREFILL_TOKENS_PER_S,
        schema::INFERENCE_TIME_TO_FIRST_TOKEN_MS,
    ] {
        assert!(of(&points, metric).is_empty(), "{metric}: {points:#?}");
    }
    assert_eq!(inference_points(&points).len(), 2);
    guard.shutdown();
}

/// The count of `metric` under the counting rule: each stream's (start
/// time, attributes) largest value over every request, summed.
fn counted(requests: &[Request], metric: &str) -> f64 {
    let mut last: std::collections::HashMap<String, f64> = Default::default();
    for request in requests {
        for p in request.points().into_iter().filter(|p| p.metric == metric) {
            let stream = format!("{} {:?}", p.start, p.attributes);
            let value = last.entry(stream).or_default();
            *value = value.max(p.value);
        }
    }
    last.values().sum()
}

#[tokio::test]
async fn a_node_serving_all_the_time_still_resets_its_series_and_loses_no_request() {
    let (_serial, receiver, guard) = exporting(
        "export_interval_secs = 0.1\nseries_reset_secs = 0.3\nprompt_shape_metrics = true",
    )
    .await;
    let stays = one_unloaded_one_staying().await;
    // A request ends every millisecond, exports in flight included.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut served = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                survey::record_inference(&stays, answered(None));
                served += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            served
        })
    };
    wait_until_async(
        "a series reset while serving",
        Duration::from_secs(20),
        || (guard.status().series_resets >= 1).then_some(()),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = traffic.join().unwrap();
    assert!(guard.flush(FLUSH), "{}", guard.status());
    let requests = receiver.requests();
    // The ended model left the exports; every request counts, once.
    let latest = requests.last().unwrap().points();
    assert_no_point_of(&latest, "gone");
    assert_eq!(
        counted(&requests, schema::INFERENCE_REQUESTS_TOTAL),
        served as f64
    );
    assert_eq!(
        counted(&requests, schema::INFERENCE_DECODE_TOKENS_PER_S),
        served as f64
    );
    let status = guard.status();
    assert_eq!(status.events_dropped, 0, "{status}");
    guard.shutdown();
}

#[tokio::test]
async fn a_flush_and_the_shutdown_record_requests_held_for_a_due_series_reset() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    // No periodic export: the reset stays due, so requests are held.
    let guard = start(
        &receiver.endpoint(),
        "export_interval_secs = 3600\nseries_reset_secs = 0.2\nprompt_shape_metrics = true",
    );
    let stays = one_unloaded_one_staying().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        survey::record_inference(&stays, answered(None));
    }
    assert!(guard.flush(FLUSH), "{}", guard.status());
    assert_eq!(
        counted(&receiver.requests(), schema::INFERENCE_REQUESTS_TOTAL),
        5.0
    );
    for _ in 0..3 {
        survey::record_inference(&stays, answered(None));
    }
    let report = guard.shutdown();
    assert!(report.drained && report.flushed, "{report:?}");
    assert_eq!(
        counted(&receiver.requests(), schema::INFERENCE_REQUESTS_TOTAL),
        8.0
    );
}

/// Loads `gone` and `stays`, unloads `gone`: the instance left loaded.
async fn one_unloaded_one_staying() -> Running {
    let gone = load(&Spec::new(1, "/m/gone.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    let stays = load(&Spec::new(2, "/m/stays.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    unload(gone).await.unwrap();
    stays
}
