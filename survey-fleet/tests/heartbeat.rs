//! Heartbeats change no answer. One node idles for days on survey's
//! simulated clock (a launch, a load and an unload, a failed launch, a
//! crash, and otherwise nothing), asked for an export every simulated 15
//! minutes, once with `heartbeat_secs = 0` (every export sent) and once with
//! the default hourly heartbeat (unchanged exports left out). Each export
//! sent is given the simulated time it was made at (start times moved back
//! as the scale-out test does), both runs go to `survey-collector serve`,
//! and the reports must be equal for every window of whole days.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;

use survey_test_support::collector::collector_reports;
use survey_test_support::{Receiver, TestDir};
mod support;

const DAYS: u64 = 4;
const NANOS: u64 = 1_000_000_000;

/// The exports an idle node sent with `heartbeat_secs`, and the simulated
/// second each was made at.
fn idle_node(heartbeat_secs: u64) -> Vec<(ExportMetricsServiceRequest, u64)> {
    let receiver = Receiver::start();
    let output = Command::new(env!("CARGO_BIN_EXE_survey-fleet"))
        .args(["idle", "--endpoint", &receiver.endpoint()])
        .args(["--heartbeat-secs", &heartbeat_secs.to_string()])
        .args(["--days", &DAYS.to_string()])
        .output()
        .expect("the idle node runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seconds: Vec<u64> = serde_json::from_slice(&output.stdout).unwrap();
    let requests: Vec<ExportMetricsServiceRequest> = receiver
        .requests()
        .into_iter()
        .map(|r| r.decoded.expect("every export decodes"))
        .collect();
    receiver.stop();
    // The last second is the shutdown's, which sends only a change.
    assert!(
        requests.len() == seconds.len() || requests.len() + 1 == seconds.len(),
        "{} requests, {} seconds",
        requests.len(),
        seconds.len()
    );
    requests.into_iter().zip(seconds).collect()
}

/// The exports with their simulated times, from `first_day` (UTC) on:
/// each point's time is its export's second; start times keep their
/// order and gaps, an hour before the first day.
fn retimed(
    exports: Vec<(ExportMetricsServiceRequest, u64)>,
    first_day: u64,
) -> Vec<ExportMetricsServiceRequest> {
    let base = first_day * 86_400 * NANOS;
    let mut earliest = u64::MAX;
    let each_point = |request: &mut ExportMetricsServiceRequest,
                      f: &mut dyn FnMut(&mut u64, &mut u64)| {
        for m in request
            .resource_metrics
            .iter_mut()
            .flat_map(|rm| rm.scope_metrics.iter_mut())
            .flat_map(|sm| sm.metrics.iter_mut())
        {
            match &mut m.data {
                Some(metric::Data::Sum(d)) => d
                    .data_points
                    .iter_mut()
                    .for_each(|p| f(&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
                Some(metric::Data::Gauge(d)) => d
                    .data_points
                    .iter_mut()
                    .for_each(|p| f(&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
                Some(metric::Data::Histogram(d)) => d
                    .data_points
                    .iter_mut()
                    .for_each(|p| f(&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
                _ => panic!("survey sends sums, gauges and histograms"),
            }
        }
    };
    let mut exports = exports;
    for (request, _) in &mut exports {
        each_point(request, &mut |start, _| {
            if *start > 0 {
                earliest = earliest.min(*start);
            }
        });
    }
    exports
        .into_iter()
        .map(|(mut request, second)| {
            each_point(&mut request, &mut |start, time| {
                *start = base - 3600 * NANOS + (*start - earliest);
                *time = base + second * NANOS;
            });
            request
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_change_no_answer_for_whole_days() {
    let dir = TestDir::new("fleet-heartbeat");
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let first_day = today - DAYS - 1;

    let every = tokio::task::spawn_blocking(|| idle_node(0)).await.unwrap();
    let hourly = tokio::task::spawn_blocking(|| idle_node(3600))
        .await
        .unwrap();
    // Every interval sent without heartbeats; about one an hour with them,
    // and each change.
    let intervals = DAYS * 24 * 4;
    assert!(every.len() as u64 >= intervals, "{} exports", every.len());
    assert!(
        (hourly.len() as u64) <= DAYS * 24 + 10,
        "{} exports with hourly heartbeats",
        hourly.len()
    );
    assert!(
        hourly.len() as u64 >= DAYS * 24 - 1,
        "{} exports",
        hourly.len()
    );

    let day = first_day as i64;
    let mut windows: Vec<(Option<i64>, Option<i64>)> = vec![(None, None)];
    for d in 0..=DAYS as i64 {
        windows.push((Some(day + d), Some(day + d + 1)));
        windows.push((Some(day + d), None));
        windows.push((None, Some(day + d)));
    }
    let expected =
        collector_reports(&dir.join("every"), &retimed(every, first_day), &windows).await;
    let got = collector_reports(&dir.join("hourly"), &retimed(hourly, first_day), &windows).await;
    for ((window, e), g) in windows.iter().zip(&expected).zip(&got) {
        assert_eq!(e, g, "window {window:?}: heartbeat 0, then hourly");
    }
    // The comparison compared something: the three models, the failure
    // and the crash are in the whole window's answers.
    let all = &expected[0];
    assert_eq!(all["most_launched"].as_array().unwrap().len(), 3, "{all:#}");
    let launches: i64 = all["most_launched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["launches"].as_i64().unwrap())
        .sum();
    assert_eq!(launches, 3);
    assert!(
        all["unstable"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["unexpected_exits"] == 1),
        "{all:#}"
    );
}
