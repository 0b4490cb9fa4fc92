//! The counting rule, one case per way a naive count goes wrong: each
//! export goes over HTTP to a real collector, and the report's numbers are
//! checked. Times are chosen days (UTC) so windows can cut streams.

use serde_json::{Value as Json, json};
use survey_collector::{Day, ReportOptions};
use survey_schema as schema;
use survey_test_support::collector::*;
use survey_test_support::otlp::*;
use survey_test_support::*;

const LAUNCH: &str = schema::LAUNCH_TOTAL;

fn window(since: Option<i64>, until: Option<i64>) -> ReportOptions {
    ReportOptions {
        since: since.map(Day),
        until: until.map(Day),
        ..ReportOptions::default()
    }
}

fn everything() -> ReportOptions {
    ReportOptions::default()
}

/// `launches` and `nodes` of `model` in most_launched; (0, 0) if absent.
fn launches(report: &Json, model: &str) -> (i64, i64) {
    rows(report, "most_launched")
        .iter()
        .find(|r| r["model"] == model)
        .map_or((0, 0), |r| {
            (
                r["launches"].as_i64().unwrap(),
                r["nodes"].as_i64().unwrap(),
            )
        })
}

async fn send_ok(
    server: &survey_collector::Server,
    request: &survey_collector::otlp::collector::metrics::v1::ExportMetricsServiceRequest,
) {
    let answer = export(server, request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.rejected(), 0, "{:?}", answer.response());
}

/// An hour, in nanoseconds.
const HOUR_NS: u64 = 3_600_000_000_000;

/// Now, in nanoseconds since the Unix epoch: for points recent enough to be
/// inside the retention period.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn first_point_counts() {
    // A lag-delta counts a series' first point as 0; for sparse data that
    // first point is usually the whole count.
    let dir = TestDir::new("first");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let start = at(DAY, 1);
    send_ok(
        &server,
        &request(
            &node,
            vec![cumulative(LAUNCH, model_attrs("a"), start, at(DAY, 2), 1)],
        ),
    )
    .await;
    let report = report(&dir, everything());
    assert_eq!(launches(&report, "a"), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn a_repeated_cumulative_value_counts_once_and_is_stored_once() {
    let dir = TestDir::new("repeat");
    let server = collector(&dir).await;
    let node = Node::new(1);
    // Recent times, so the raw points are inside the retention period.
    let now = now_ns();
    let start = now - HOUR_NS;
    for i in 0..10u64 {
        let time = start + (i + 1) * 15_000_000_000;
        send_ok(
            &server,
            &request(
                &node,
                vec![cumulative(LAUNCH, model_attrs("a"), start, time, 5)],
            ),
        )
        .await;
    }
    let report = report(&dir, everything());
    assert_eq!(launches(&report, "a"), (5, 1));
    assert_eq!(
        raw_rows(&dir, "otel_metrics_sum"),
        1,
        "an unchanged value adds no raw point"
    );
    // A change is stored.
    send_ok(
        &server,
        &request(
            &node,
            vec![cumulative(LAUNCH, model_attrs("a"), start, now, 6)],
        ),
    )
    .await;
    assert_eq!(raw_rows(&dir, "otel_metrics_sum"), 2);
    assert_eq!(launches(&report_of(&dir), "a"), (6, 1));
    server.shutdown().await;
}

fn report_of(dir: &TestDir) -> Json {
    report(dir, everything())
}

#[tokio::test]
async fn a_retried_request_counts_once() {
    let dir = TestDir::new("retry");
    let server = collector(&dir).await;
    let export_request = request(
        &Node::new(1),
        vec![
            cumulative(LAUNCH, model_attrs("a"), at(DAY, 1), at(DAY, 2), 3),
            histogram(
                schema::UPTIME_S,
                model_attrs("a"),
                at(DAY, 1),
                at(DAY, 2),
                &[20.0, 20.0],
            ),
        ],
    );
    for _ in 0..3 {
        send_ok(&server, &export_request).await;
    }
    let report = report_of(&dir);
    assert_eq!(launches(&report, "a"), (3, 1));
    // Two uptimes in (10, 30]: the median is the bucket's middle, 20 s.
    let unstable = rows(&report, "slow_or_short");
    assert_eq!(unstable[0]["uptime_p50_s"], json!(20.0), "{report:#}");
    // One raw point per stream, shaped like the ClickHouse exporter's rows.
    assert_eq!(raw_rows(&dir, "otel_metrics_sum"), 1);
    let store = survey_collector::Store::open_read_only(&dir.db()).unwrap();
    let (count, sum, buckets, bounds, resource): (i64, f64, String, String, String) = store
        .connection()
        .query_row(
            "SELECT Count, Sum, BucketCounts, ExplicitBounds, ResourceAttributes \
             FROM otel_metrics_histogram",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!((count, sum), (2, 40.0));
    assert_eq!(buckets, "[0,2,0,0,0,0,0,0,0,0,0,0,0,0,0]");
    assert_eq!(
        serde_json::from_str::<Vec<f64>>(&bounds).unwrap(),
        schema::UPTIME_BOUNDARIES_S
    );
    assert_eq!(
        resource,
        format!(
            "{{\"service.instance.id\":\"00000000-0000-4000-8000-000000000001\",\
             \"service.name\":\"mesh-llm\",\"service.version\":\"1.0.0\",\
             \"telemetry.sdk.language\":\"rust\",\"telemetry.sdk.name\":\"opentelemetry\",\
             \"telemetry.sdk.version\":\"{}\"}}",
            sdk_version()
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn points_out_of_order_count_once() {
    let dir = TestDir::new("order");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let start = at(DAY, 0);
    for (day, value) in [(DAY + 2, 4), (DAY, 1), (DAY + 1, 2), (DAY + 2, 4)] {
        send_ok(
            &server,
            &request(
                &node,
                vec![cumulative(
                    LAUNCH,
                    model_attrs("a"),
                    start,
                    at(day, 12),
                    value,
                )],
            ),
        )
        .await;
    }
    assert_eq!(launches(&report_of(&dir), "a"), (4, 1));
    // Each day gets its own share, whatever the arrival order.
    for (day, expected) in [(DAY, 1), (DAY + 1, 1), (DAY + 2, 2)] {
        let report = report(&dir, window(Some(day), Some(day + 1)));
        assert_eq!(launches(&report, "a").0, expected, "day {day}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_restart_is_a_new_stream() {
    let dir = TestDir::new("restart");
    let server = collector(&dir).await;
    // A node that predates service.instance.id: before and after its
    // restart the resource is the same; only the start time tells the two
    // processes apart. Its counter starts again from 1.
    let legacy = Node::legacy();
    send_ok(
        &server,
        &request(
            &legacy,
            vec![cumulative(
                LAUNCH,
                model_attrs("a"),
                at(DAY, 1),
                at(DAY, 2),
                2,
            )],
        ),
    )
    .await;
    send_ok(
        &server,
        &request(
            &legacy,
            vec![cumulative(
                LAUNCH,
                model_attrs("a"),
                at(DAY, 3),
                at(DAY, 4),
                1,
            )],
        ),
    )
    .await;
    // A current node restarts with a new id and a new start time.
    send_ok(
        &server,
        &request(
            &Node::new(7),
            vec![cumulative(
                LAUNCH,
                model_attrs("b"),
                at(DAY, 1),
                at(DAY, 2),
                2,
            )],
        ),
    )
    .await;
    send_ok(
        &server,
        &request(
            &Node::new(8),
            vec![cumulative(
                LAUNCH,
                model_attrs("b"),
                at(DAY, 3),
                at(DAY, 4),
                1,
            )],
        ),
    )
    .await;
    let report = report_of(&dir);
    // 2 + 1, not max(2, 1). Legacy processes cannot be told apart: one node.
    assert_eq!(launches(&report, "a"), (3, 1));
    assert_eq!(launches(&report, "b"), (3, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn identical_nodes_are_two_streams() {
    let dir = TestDir::new("identical");
    let server = collector(&dir).await;
    // Same model, same hardware, started in the same second: only
    // service.instance.id differs.
    for n in [1, 2] {
        send_ok(
            &server,
            &request(
                &Node::new(n),
                vec![cumulative(
                    LAUNCH,
                    model_attrs("a"),
                    at(DAY, 1),
                    at(DAY, 2),
                    1,
                )],
            ),
        )
        .await;
    }
    assert_eq!(launches(&report_of(&dir), "a"), (2, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn delta_points_add_up_and_a_retry_counts_once() {
    let dir = TestDir::new("delta");
    let server = collector(&dir).await;
    let node = Node::new(1);
    // Delta points are deduplicated against the raw points, so they must be
    // recent: yesterday and today.
    let day = today() - 1;
    let first = request(
        &node,
        vec![counter(
            LAUNCH,
            model_attrs("a"),
            at(day, 1),
            at(day, 2),
            2,
            1,
        )],
    );
    let second = request(
        &node,
        vec![counter(
            LAUNCH,
            model_attrs("a"),
            at(day, 2),
            at(day + 1, 0),
            3,
            1,
        )],
    );
    send_ok(&server, &first).await;
    send_ok(&server, &second).await;
    send_ok(&server, &first).await; // retried
    assert_eq!(launches(&report_of(&dir), "a"), (5, 1));
    assert_eq!(
        launches(&report(&dir, window(Some(day + 1), None)), "a"),
        (3, 1)
    );
    assert_eq!(
        launches(&report(&dir, window(None, Some(day + 1))), "a"),
        (2, 1)
    );
    assert_eq!(stream_rows(&dir), 1, "one delta series, one stream");
    // A delta point older than the raw points are kept could not be told
    // from its retry: refused.
    let stale = request(
        &node,
        vec![counter(
            LAUNCH,
            model_attrs("a"),
            at(DAY, 1),
            at(DAY, 2),
            7,
            1,
        )],
    );
    let answer = export(&server, &stale).await;
    assert_eq!(answer.status, 200);
    let partial = answer.response().partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial
            .error_message
            .contains("older than the collector's retention"),
        "{partial:?}"
    );
    assert_eq!(launches(&report_of(&dir), "a"), (5, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn a_window_cuts_a_counter_stream() {
    let dir = TestDir::new("window-counter");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let start = at(DAY, 0);
    for (day, value) in [(DAY, 2), (DAY + 2, 5), (DAY + 4, 9)] {
        send_ok(
            &server,
            &request(
                &node,
                vec![cumulative(
                    LAUNCH,
                    model_attrs("a"),
                    start,
                    at(day, 6),
                    value,
                )],
            ),
        )
        .await;
    }
    for (since, until, expected) in [
        (None, None, 9),
        (Some(DAY), Some(DAY + 1), 2),
        (Some(DAY + 1), Some(DAY + 3), 3),
        (Some(DAY + 1), Some(DAY + 2), 0),
        (Some(DAY + 3), None, 4),
        (None, Some(DAY + 3), 5),
        (Some(DAY + 5), None, 0),
    ] {
        let report = report(&dir, window(since, until));
        assert_eq!(launches(&report, "a").0, expected, "[{since:?}, {until:?})");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_window_cuts_a_histogram_stream() {
    let dir = TestDir::new("window-histogram");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let start = at(DAY, 0);
    let metric = schema::LAUNCH_DURATION_MS;
    // Day 0: one 50 ms launch. Day 2: two more, 3 s and 4 s.
    let day0 = vec![
        cumulative(LAUNCH, model_attrs("a"), start, at(DAY, 6), 1),
        histogram(metric, model_attrs("a"), start, at(DAY, 6), &[50.0]),
    ];
    let day2 = vec![
        cumulative(LAUNCH, model_attrs("a"), start, at(DAY + 2, 6), 3),
        histogram(
            metric,
            model_attrs("a"),
            start,
            at(DAY + 2, 6),
            &[50.0, 3000.0, 4000.0],
        ),
    ];
    send_ok(&server, &request(&node, day0)).await;
    send_ok(&server, &request(&node, day2)).await;
    let p = |report: &Json, field: &str| {
        row(report, "slow_or_short", &[("model", json!("a"))])[field].clone()
    };
    // Everything: 50, 3000, 4000: the median lies in (2500, 5000], the
    // second of the two there: 2500 + 2500 * (1.5 - 1) / 2 = 3125.
    let all = report_of(&dir);
    assert_eq!(p(&all, "launch_p50_ms"), json!(3125.0));
    // Day 0 alone: the one 50 ms launch, read as (0, 100]'s middle.
    let first = report(&dir, window(Some(DAY), Some(DAY + 1)));
    assert_eq!(p(&first, "launch_p50_ms"), json!(50.0));
    // From day 1: only the two in (2500, 5000], median in the middle.
    let later = report(&dir, window(Some(DAY + 1), None));
    assert_eq!(p(&later, "launch_p50_ms"), json!(3750.0));
    assert_eq!(p(&later, "launches"), json!(2));
    server.shutdown().await;
}

#[tokio::test]
async fn gauges_give_the_largest_context_seen_in_the_window() {
    let dir = TestDir::new("gauge");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let metric = schema::MODEL_CONTEXT_LENGTH;
    for (day, hour, ctx) in [
        (DAY, 6, 4096),
        (DAY, 7, 4096),
        (DAY + 1, 6, 8192),
        (DAY + 1, 7, 4096),
        (DAY + 2, 6, 2048),
        (DAY + 2, 7, 2048),
    ] {
        send_ok(
            &server,
            &request(
                &node,
                vec![
                    cumulative(LAUNCH, model_attrs("a"), at(DAY, 0), at(day, hour), 1),
                    gauge(metric, model_attrs("a"), at(day, hour), ctx),
                ],
            ),
        )
        .await;
    }
    let max = |report: &Json| {
        row(report, "viable_context", &[("model", json!("a"))])["max_context"].clone()
    };
    assert_eq!(max(&report_of(&dir)), json!(8192));
    assert_eq!(max(&report(&dir, window(Some(DAY + 2), None))), json!(2048));
    assert_eq!(max(&report(&dir, window(None, Some(DAY + 1)))), json!(4096));
    // One gauge stream, whatever start times its points carry; a repeated
    // value on the same day adds no raw point.
    assert_eq!(stream_rows(&dir), 2);
    assert_eq!(raw_rows(&dir, "otel_metrics_gauge"), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn a_point_from_the_future_does_not_defeat_change_detection() {
    let dir = TestDir::new("future");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let now = now_ns();
    let hour = HOUR_NS;
    let start = now - 2 * hour;
    // A clock 20 hours ahead sent one point; the node's later exports, at
    // real times, repeat an unchanged value.
    send_ok(
        &server,
        &request(
            &node,
            vec![cumulative(
                LAUNCH,
                model_attrs("a"),
                start,
                now + 20 * hour,
                5,
            )],
        ),
    )
    .await;
    for i in 0..10 {
        send_ok(
            &server,
            &request(
                &node,
                vec![cumulative(
                    LAUNCH,
                    model_attrs("a"),
                    start,
                    now - hour + i,
                    6,
                )],
            ),
        )
        .await;
    }
    assert_eq!(raw_rows(&dir, "otel_metrics_sum"), 2);
    assert_eq!(launches(&report_of(&dir), "a"), (6, 1));
    server.shutdown().await;
}

/// Rollup rows of the stream of `model`'s launch counter.
fn rollup_rows(dir: &TestDir, model: &str) -> Vec<(i64, f64)> {
    let store = survey_collector::Store::open_read_only(&dir.db()).unwrap();
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT r.Day, r.Value FROM rollup_daily AS r JOIN streams AS s USING (StreamId) \
             WHERE s.MetricName = ?1 AND s.Model = ?2 ORDER BY r.Day",
        )
        .unwrap();
    stmt.query_map([LAUNCH, model], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn repeats_on_later_days_add_no_rollup_rows() {
    let dir = TestDir::new("later-repeats");
    let server = collector(&dir).await;
    let node = Node::new(1);
    for (day, value) in [
        (DAY, 2),
        (DAY + 1, 2),
        (DAY + 2, 2),
        (DAY + 3, 5),
        (DAY + 4, 5),
    ] {
        let metrics = vec![cumulative(
            LAUNCH,
            model_attrs("a"),
            at(DAY, 0),
            at(day, 6),
            value,
        )];
        send_ok(&server, &request(&node, metrics)).await;
    }
    assert_eq!(rollup_rows(&dir, "a"), [(DAY, 2.0), (DAY + 3, 5.0)]);
    for (since, until, expected) in [
        (None, None, 5),
        (Some(DAY + 1), Some(DAY + 3), 0),
        (Some(DAY + 3), None, 3),
        (Some(DAY + 4), None, 0),
        (None, Some(DAY + 1), 2),
    ] {
        let report = report(&dir, window(since, until));
        assert_eq!(launches(&report, "a").0, expected, "[{since:?}, {until:?})");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_early_repeat_that_arrives_late_still_counts_on_its_day() {
    let dir = TestDir::new("late-repeat");
    let server = collector(&dir).await;
    let node = Node::new(1);
    // The day-5 point arrives first; the day-2 point with the same value
    // (the launches had already happened) arrives after it.
    for day in [DAY + 5, DAY + 2] {
        let metrics = vec![cumulative(
            LAUNCH,
            model_attrs("a"),
            at(DAY, 0),
            at(day, 6),
            3,
        )];
        send_ok(&server, &request(&node, metrics)).await;
    }
    assert_eq!(
        launches(&report(&dir, window(None, Some(DAY + 3))), "a").0,
        3
    );
    assert_eq!(
        launches(&report(&dir, window(Some(DAY + 3), None)), "a").0,
        0
    );
    server.shutdown().await;
}

/// A delta launch-duration histogram of `values`, with its launch counter.
fn delta_histogram(
    node: &Node,
    start: u64,
    time: u64,
    values: &[f64],
) -> survey_collector::otlp::collector::metrics::v1::ExportMetricsServiceRequest {
    let mut m = histogram(
        schema::LAUNCH_DURATION_MS,
        model_attrs("a"),
        start,
        time,
        values,
    );
    if let Some(survey_collector::otlp::metrics::v1::metric::Data::Histogram(h)) = &mut m.data {
        h.aggregation_temporality = 1;
    }
    request(
        node,
        vec![
            counter(
                LAUNCH,
                model_attrs("a"),
                start,
                time,
                values.len() as u64,
                1,
            ),
            m,
        ],
    )
}

#[tokio::test]
async fn delta_histograms_add_up_bucket_by_bucket() {
    let dir = TestDir::new("delta-histogram");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let day = today() - 1;
    let delta = |start, time, values: &[f64]| delta_histogram(&node, start, time, values);
    // Two exports on the same day (one retried), one the next day.
    let first = delta(at(day, 1), at(day, 2), &[50.0]);
    send_ok(&server, &first).await;
    send_ok(&server, &delta(at(day, 2), at(day, 3), &[3000.0, 4000.0])).await;
    send_ok(&server, &first).await;
    send_ok(&server, &delta(at(day, 3), at(day + 1, 0), &[400.0])).await;
    let p50 = |report: &Json| {
        row(report, "slow_or_short", &[("model", json!("a"))])["launch_p50_ms"].clone()
    };
    let all = report_of(&dir);
    assert_eq!(launches(&all, "a").0, 4);
    // 50, 400, 3000, 4000: the 2nd of 4 is 400, alone in (250, 500]: read
    // as the bucket's top.
    assert_eq!(p50(&all), json!(500.0));
    // The first day: 50, 3000, 4000.
    assert_eq!(
        p50(&report(&dir, window(None, Some(day + 1)))),
        json!(3125.0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_histogram_whose_count_did_not_grow_in_the_window_adds_nothing() {
    // A cumulative histogram whose observations moved between buckets at an
    // equal count (no honest sender does this, but validation lets it
    // through): the window in which the count did not grow counts no
    // observation, and the earliest day's buckets stand for the count,
    // whichever arrived first.
    let dir = TestDir::new("histogram-equal-count");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let start = at(DAY, 0);
    let metric = schema::LAUNCH_DURATION_MS;
    let early = vec![
        cumulative(LAUNCH, model_attrs("a"), start, at(DAY, 6), 2),
        histogram(metric, model_attrs("a"), start, at(DAY, 6), &[50.0, 50.0]),
    ];
    // (A third launch, still running, so the window has a row.)
    let late = vec![
        cumulative(LAUNCH, model_attrs("a"), start, at(DAY + 3, 6), 3),
        histogram(
            metric,
            model_attrs("a"),
            start,
            at(DAY + 3, 6),
            &[400_000.0, 400_000.0],
        ),
    ];
    // The later day arrives first.
    send_ok(&server, &request(&node, late)).await;
    send_ok(&server, &request(&node, early)).await;
    let p50 = |report: &Json| {
        row(report, "slow_or_short", &[("model", json!("a"))])["launch_p50_ms"].clone()
    };
    // Everything: the two launches, as the earliest day saw them.
    assert_eq!(p50(&report_of(&dir)), json!(50.0));
    // From day 1: the count never grew, so no launch time.
    let later = report(&dir, window(Some(DAY + 1), None));
    assert_eq!(p50(&later), Json::Null);
    server.shutdown().await;
}

#[tokio::test]
async fn delta_histograms_out_of_order_across_days_and_retried_add_up_once() {
    let dir = TestDir::new("delta-histogram-order");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let day = today() - 1;
    let exports = [
        delta_histogram(&node, at(day, 1), at(day, 2), &[50.0]),
        delta_histogram(&node, at(day, 2), at(day, 3), &[3000.0, 4000.0]),
        delta_histogram(&node, at(day, 3), at(day, 23), &[400.0]),
        delta_histogram(&node, at(day, 23), at(day + 1, 0), &[70.0, 80.0]),
    ];
    // The next day's first, an earlier day's late, and retries of both.
    for i in [3, 1, 2, 0, 3, 1] {
        send_ok(&server, &exports[i]).await;
    }
    // Checked on the way: the summaries ingest kept equal those rebuilt
    // from the rollup rows.
    let all = report_of(&dir);
    assert_eq!(launches(&all, "a").0, 6);
    let p50 = |report: &Json| {
        row(report, "slow_or_short", &[("model", json!("a"))])["launch_p50_ms"].clone()
    };
    // 50, 70, 80, 400, 3000, 4000: the 3rd of 6 is 80, the last of the
    // three in the first bucket, (0, 100]: read as the bucket's top.
    assert_eq!(p50(&all), json!(100.0));
    let first_day = report(&dir, window(None, Some(day + 1)));
    assert_eq!(launches(&first_day, "a").0, 4);
    server.shutdown().await;
}

// ---------------------------------------------------------------------
// The inference metrics (opt-in) follow the same rule: the requests
// counter, one stream per outcome, and the speed histograms.

const REQUESTS: &str = schema::INFERENCE_REQUESTS_TOTAL;
const DECODE: &str = schema::INFERENCE_DECODE_TOKENS_PER_S;

/// `requests`, `ok` and `nodes` of `model`'s `fastest` row; (0, 0, 0) if
/// it has none.
fn requests(report: &Json, model: &str) -> (i64, i64, i64) {
    rows(report, "fastest")
        .iter()
        .find(|r| r["model"] == model)
        .map_or((0, 0, 0), |r| {
            (
                r["requests"].as_i64().unwrap(),
                r["ok"].as_i64().unwrap(),
                r["nodes"].as_i64().unwrap(),
            )
        })
}

/// `field` of `model`'s `fastest` row.
fn fastest(report: &Json, model: &str, field: &str) -> Json {
    row(report, "fastest", &[("model", json!(model))])[field].clone()
}

/// A node's export of `model`'s requests so far: `ok` answered in full,
/// `timeouts` timed out, and the decode speeds of those answered in full.
fn served(
    model: &str,
    (start, time): (u64, u64),
    ok: u64,
    timeouts: u64,
    speeds: &[f64],
) -> Vec<survey_collector::otlp::metrics::v1::Metric> {
    let mut metrics = vec![cumulative(
        REQUESTS,
        outcome_attrs(model, "ok"),
        start,
        time,
        ok,
    )];
    if timeouts > 0 {
        metrics.push(cumulative(
            REQUESTS,
            outcome_attrs(model, "timeout"),
            start,
            time,
            timeouts,
        ));
    }
    metrics.push(histogram(
        DECODE,
        inference_attrs(model),
        start,
        time,
        speeds,
    ));
    metrics
}

#[tokio::test]
async fn inference_first_points_count() {
    let dir = TestDir::new("inference-first");
    let server = collector(&dir).await;
    let metrics = served(
        "a",
        (at(DAY, 1), at(DAY, 2)),
        4,
        1,
        &[40.0, 40.0, 60.0, 60.0],
    );
    send_ok(&server, &request(&Node::new(1), metrics)).await;
    let report = report_of(&dir);
    // Both outcomes' streams count in full; `ok` only the first.
    assert_eq!(requests(&report, "a"), (5, 4, 1));
    // (30, 50]: 2, (50, 75]: 2. The 2nd of 4 ends the first bucket: 50;
    // the p10, 0.4 of the way into it: 30 + 20 * 0.4 / 2 = 34.
    assert_eq!(fastest(&report, "a", "decode_tps_p50"), json!(50.0));
    assert_eq!(fastest(&report, "a", "decode_tps_p10"), json!(34.0));
    // The node counts as one, in the report's title too.
    let store = survey_collector::Store::open_read_only(&dir.db()).unwrap();
    let built = survey_collector::Report::build(&store, everything()).unwrap();
    assert_eq!(built.nodes, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn inference_retries_and_repeats_count_once() {
    let dir = TestDir::new("inference-retry");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let start = now_ns() - HOUR_NS;
    let first = request(
        &node,
        served("a", (start, start + 15_000_000_000), 2, 1, &[40.0, 40.0]),
    );
    // A retried request, then exports that repeat unchanged values.
    for _ in 0..3 {
        send_ok(&server, &first).await;
    }
    for i in 2..6u64 {
        let time = start + i * 15_000_000_000;
        send_ok(
            &server,
            &request(&node, served("a", (start, time), 2, 1, &[40.0, 40.0])),
        )
        .await;
    }
    let report = report_of(&dir);
    assert_eq!(requests(&report, "a"), (3, 2, 1));
    assert_eq!(fastest(&report, "a", "decode_tps_p50"), json!(40.0));
    // One raw point per stream: the two outcomes' and the histogram's.
    assert_eq!(raw_rows(&dir, "otel_metrics_sum"), 2);
    assert_eq!(raw_rows(&dir, "otel_metrics_histogram"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_inference_restart_is_a_new_stream() {
    let dir = TestDir::new("inference-restart");
    let server = collector(&dir).await;
    // A node that predates service.instance.id, before and after a
    // restart: only the start times differ, and the counts start again.
    let legacy = Node::legacy();
    for (start, time) in [(at(DAY, 1), at(DAY, 2)), (at(DAY, 3), at(DAY, 4))] {
        let metrics = served("a", (start, time), 2, 0, &[40.0, 60.0]);
        send_ok(&server, &request(&legacy, metrics)).await;
    }
    // A current node restarts with a new id.
    for (n, start, time) in [(7, at(DAY, 1), at(DAY, 2)), (8, at(DAY, 3), at(DAY, 4))] {
        let metrics = served("b", (start, time), 2, 0, &[40.0, 60.0]);
        send_ok(&server, &request(&Node::new(n), metrics)).await;
    }
    let report = report_of(&dir);
    // 2 + 2, not max(2, 2); legacy processes are one node.
    assert_eq!(requests(&report, "a"), (4, 4, 1));
    assert_eq!(requests(&report, "b"), (4, 4, 2));
    // Both processes' speeds: (30, 50]: 2, (50, 75]: 2.
    for model in ["a", "b"] {
        assert_eq!(fastest(&report, model, "decode_tps_p50"), json!(50.0));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn identical_inference_nodes_are_two_streams() {
    let dir = TestDir::new("inference-identical");
    let server = collector(&dir).await;
    for n in [1, 2] {
        let metrics = served("a", (at(DAY, 1), at(DAY, 2)), 2, 0, &[40.0, 40.0]);
        send_ok(&server, &request(&Node::new(n), metrics)).await;
    }
    let report = report_of(&dir);
    assert_eq!(requests(&report, "a"), (4, 4, 2));
    // Four speeds in (30, 50]: the p50 at its middle; the p10, rank 0.4
    // of the 4 in it: 30 + 20 * 0.4 / 4 = 32.
    assert_eq!(fastest(&report, "a", "decode_tps_p50"), json!(40.0));
    assert_eq!(fastest(&report, "a", "decode_tps_p10"), json!(32.0));
    assert_eq!(stream_rows(&dir), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn inference_delta_points_add_up_and_a_retry_counts_once() {
    let dir = TestDir::new("inference-delta");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let day = today() - 1;
    let delta = |start, time, ok, speeds: &[f64]| {
        let mut metrics = served("a", (start, time), ok, 0, speeds);
        for m in &mut metrics {
            match &mut m.data {
                Some(survey_collector::otlp::metrics::v1::metric::Data::Sum(s)) => {
                    s.aggregation_temporality = 1
                }
                Some(survey_collector::otlp::metrics::v1::metric::Data::Histogram(h)) => {
                    h.aggregation_temporality = 1
                }
                _ => unreachable!(),
            }
        }
        request(&node, metrics)
    };
    let first = delta(at(day, 1), at(day, 2), 1, &[40.0]);
    send_ok(&server, &first).await;
    send_ok(
        &server,
        &delta(at(day, 2), at(day + 1, 0), 3, &[60.0, 60.0, 60.0]),
    )
    .await;
    send_ok(&server, &first).await; // retried
    let all = report_of(&dir);
    assert_eq!(requests(&all, "a"), (4, 4, 1));
    // 40, 60, 60, 60: the 2nd of 4 is the first of three in (50, 75].
    let p50 = 50.0 + 25.0 * (2.0 - 1.0) / 3.0;
    let found = fastest(&all, "a", "decode_tps_p50").as_f64().unwrap();
    assert!((found - p50).abs() < 1e-9, "{found} vs {p50}");
    let first_day = report(&dir, window(None, Some(day + 1)));
    assert_eq!(requests(&first_day, "a"), (1, 1, 1));
    assert_eq!(fastest(&first_day, "a", "decode_tps_p50"), json!(40.0));
    server.shutdown().await;
}
