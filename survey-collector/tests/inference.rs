//! The opt-in inference metrics at the receiving side: what real survey
//! nodes with `prompt_shape_metrics = true` send is accepted whole, and
//! `fastest` answers exactly, in its order, with its options and windows.

mod node;

use serde_json::{Value as Json, json};
use survey_collector::otlp::common::v1::KeyValue;
use survey_collector::otlp::metrics::v1::Metric;
use survey_collector::{Day, ReportOptions, Store};
use survey_schema as schema;
use survey_test_support::collector::*;
use survey_test_support::otlp::*;
use survey_test_support::*;

/// A child node's entry point, not a test: the tests that need a node
/// start this binary with `--include-ignored --exact node_child`.
#[test]
#[ignore = "a child node's entry point, started by the tests that need one"]
fn node_child() {
    node::run_child();
}

/// The columns of `fastest`, in order.
const COLUMNS: [&str; 12] = [
    "model",
    "gpu_name",
    "backend_device",
    "context_bucket",
    "requests",
    "ok",
    "decode_tps_p50",
    "decode_tps_p10",
    "prefill_tps_p50",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "nodes",
];

/// `row` equals `expected` field by field: texts, integers and nulls
/// exactly, quantiles within 1e-9.
fn assert_row(row: &Json, expected: &Json) {
    let mut keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut columns = COLUMNS;
    keys.sort();
    columns.sort();
    assert_eq!(keys, columns, "{row}");
    for column in COLUMNS {
        let (found, wanted) = (&row[column], &expected[column]);
        match (found.as_f64(), wanted.as_f64()) {
            (Some(a), Some(b)) if !wanted.is_i64() => {
                assert!((a - b).abs() < 1e-9, "{column}: {row} vs {expected}")
            }
            _ => assert_eq!(found, wanted, "{column}: {row} vs {expected}"),
        }
    }
}

fn assert_rows(report: &Json, expected: &[Json]) {
    let rows = rows(report, "fastest");
    assert_eq!(rows.len(), expected.len(), "{report:#}");
    for (row, expected) in rows.iter().zip(expected) {
        assert_row(row, expected);
    }
}

/// A `fastest` row; `null` quantiles where the group has no data.
#[allow(clippy::too_many_arguments)]
fn fastest_row(
    (model, gpu, device, bucket): (&str, Option<&str>, &str, &str),
    requests: i64,
    ok: i64,
    decode: Option<(f64, f64)>,
    prefill: Option<f64>,
    ttft: Option<(f64, f64)>,
    nodes: i64,
) -> Json {
    json!({
        "model": model,
        "gpu_name": gpu,
        "backend_device": device,
        "context_bucket": bucket,
        "requests": requests,
        "ok": ok,
        "decode_tps_p50": decode.map(|d| d.0),
        "decode_tps_p10": decode.map(|d| d.1),
        "prefill_tps_p50": prefill,
        "ttft_p50_ms": ttft.map(|t| t.0),
        "ttft_p90_ms": ttft.map(|t| t.1),
        "nodes": nodes,
    })
}

const RTX: &str = "NVIDIA GeForce RTX 4090";

#[tokio::test(flavor = "multi_thread")]
async fn real_nodes_with_the_switch_on_are_accepted_whole() {
    let dir = TestDir::new("inference-nodes");
    let server = collector(&dir).await;
    let endpoint = server.endpoint();
    // Two identical GPU nodes and a CPU node, each with every metric
    // survey has (see `node::inference_script`).
    let children: Vec<_> = ["inference-gpu", "inference-gpu", "inference-cpu"]
        .into_iter()
        .map(|script| {
            node::spawn_with(
                "node_child",
                script,
                &endpoint,
                "prompt_shape_metrics = true",
            )
        })
        .collect();
    for child in children {
        node::finished(child, "a node").await;
    }
    let totals = server.totals();
    server.shutdown().await;
    // Not one point refused, and every metric of the schema stored.
    assert_eq!(totals.rejected, 0, "{totals:?}");
    assert!(totals.accepted > 0);
    let store = Store::open_read_only(&dir.db()).unwrap();
    let stored: Vec<String> = store
        .connection()
        .prepare("SELECT DISTINCT MetricName FROM streams ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut all: Vec<&str> = schema::METRICS.iter().map(|m| m.name).collect();
    all.sort();
    assert_eq!(stored, all);
    // The outcome, in its typed column, only on the request counter: one
    // stream per node and outcome.
    let outcomes: Vec<(String, String, i64)> = store
        .connection()
        .prepare(
            "SELECT MetricName, RequestOutcome, count(*) FROM streams \
             WHERE RequestOutcome IS NOT NULL GROUP BY 1, 2 ORDER BY 2",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let requests = schema::INFERENCE_REQUESTS_TOTAL.to_string();
    assert_eq!(
        outcomes,
        [
            (requests.clone(), "backend_error".to_string(), 3),
            (requests.clone(), "client_cancelled".to_string(), 3),
            (requests, "ok".to_string(), 3),
        ]
    );
    drop(store);

    // Per node: 5 requests, 3 answered in full (2 streamed, first token
    // after 300 ms, in (250, 500]). GPU: 40 tokens/s, in (30, 50], prompt
    // 2,000 tokens/s, in (1000, 2500]. CPU: 8 tokens/s, in (5, 10], prompt
    // 125 tokens/s, in (100, 250]. One bucket each: quantiles are read
    // linearly across it.
    let report = report(&dir, ReportOptions::default());
    let ttft = Some((250.0 + 250.0 * 0.5, 250.0 + 250.0 * 0.9));
    assert_rows(
        &report,
        &[
            fastest_row(
                ("Qwen3-8B-Q4_K_M", Some(RTX), "cuda", "16k_32k"),
                10,
                6,
                Some((30.0 + 20.0 * 0.5, 30.0 + 20.0 * 0.1)),
                Some(1000.0 + 1500.0 * 0.5),
                ttft,
                2,
            ),
            fastest_row(
                ("Qwen3-8B-Q4_K_M", None, "cpu", "16k_32k"),
                5,
                3,
                Some((5.0 + 5.0 * 0.5, 5.0 + 5.0 * 0.1)),
                Some(100.0 + 150.0 * 0.5),
                ttft,
                1,
            ),
        ],
    );
    // The lifecycle questions count these nodes as ever.
    assert_eq!(
        report["most_launched"],
        json!([
            {"model": "Qwen3-8B-Q4_K_M", "launches": 6, "nodes": 3},
            {"model": "Llama-3.2-1B", "launches": 3, "nodes": 3},
        ])
    );

    // The table form: a row per combination, speeds with one decimal.
    let output = collector_report(&dir.db(), &["--question", "fastest"]);
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    let header = table.lines().nth(3).unwrap();
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), COLUMNS);
    let cpu_row = table
        .lines()
        .find(|l| l.contains(" cpu "))
        .expect("the CPU row");
    let cells: Vec<&str> = cpu_row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "Qwen3-8B-Q4_K_M",
            "cpu",
            "cpu",
            "16k_32k",
            "5",
            "3",
            "7.5",
            "5.5",
            "175.0",
            "375",
            "475",
            "1"
        ],
        "{table}"
    );
    // CSV: the same row, values as JSON numbers, a null empty.
    let output = collector_report(&dir.db(), &["--format", "csv", "--question", "fastest"]);
    let csv = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        csv.split("\r\n").nth(2),
        Some("Qwen3-8B-Q4_K_M,,cpu,16k_32k,5,3,7.5,5.5,175.0,375.0,475.0,1"),
        "{csv}"
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The inference attributes of `model` at `bucket` on an RTX 4090 node
/// (`gpu`) or a CPU node.
fn on(model: &str, gpu: bool, bucket: &str) -> Vec<KeyValue> {
    let mut attrs = with_attr(
        inference_attrs(model),
        kv_str("mesh_llm.context_bucket", bucket),
    );
    if !gpu {
        attrs = without_attr(attrs, "mesh_llm.gpu_name");
        attrs = without_attr(attrs, "mesh_llm.gpu_stable_id");
        attrs = with_attr(attrs, kv_str("mesh_llm.backend_device", "cpu"));
        attrs = with_attr(attrs, kv_int("mesh_llm.gpu_count", 0));
    }
    attrs
}

/// One node's requests to one model: counts by outcome, and the speeds and
/// times of those answered in full.
struct Served<'a> {
    model: &'a str,
    gpu: bool,
    bucket: &'a str,
    outcomes: &'a [(&'a str, u64)],
    decode: &'a [f64],
    prefill: &'a [f64],
    ttft: &'a [f64],
}

impl Served<'_> {
    fn metrics(&self, start: u64, time: u64) -> Vec<Metric> {
        let attrs = on(self.model, self.gpu, self.bucket);
        let mut metrics: Vec<Metric> = self
            .outcomes
            .iter()
            .map(|(outcome, n)| {
                let attrs = with_attr(attrs.clone(), kv_str("mesh_llm.request_outcome", outcome));
                cumulative(schema::INFERENCE_REQUESTS_TOTAL, attrs, start, time, *n)
            })
            .collect();
        for (metric, values) in [
            (schema::INFERENCE_DECODE_TOKENS_PER_S, self.decode),
            (schema::INFERENCE_PREFILL_TOKENS_PER_S, self.prefill),
            (schema::INFERENCE_TIME_TO_FIRST_TOKEN_MS, self.ttft),
        ] {
            if !values.is_empty() {
                metrics.push(histogram(metric, attrs.clone(), start, time, values));
            }
        }
        metrics
    }
}

/// Four nodes serving six model × hardware × context combinations.
fn fleet() -> Vec<(u32, Served<'static>)> {
    let none: &[f64] = &[];
    vec![
        (
            1,
            Served {
                model: "qwen",
                gpu: true,
                bucket: "<=8k",
                outcomes: &[("ok", 4), ("backend_error", 1)],
                decode: &[40.0, 40.0, 60.0, 60.0],
                prefill: &[2000.0; 4],
                ttft: &[300.0, 300.0],
            },
        ),
        (
            2,
            Served {
                model: "qwen",
                gpu: true,
                bucket: "<=8k",
                outcomes: &[("ok", 2), ("timeout", 1), ("client_cancelled", 1)],
                decode: &[90.0, 120.0],
                prefill: &[3000.0, 3000.0],
                ttft: &[800.0],
            },
        ),
        (
            3,
            Served {
                model: "qwen",
                gpu: false,
                bucket: "<=8k",
                outcomes: &[("ok", 3)],
                decode: &[8.0, 8.0, 12.0],
                prefill: &[60.0; 3],
                ttft: none,
            },
        ),
        (
            4,
            Served {
                model: "mistral",
                gpu: true,
                bucket: "8k_16k",
                outcomes: &[("ok", 1)],
                decode: &[400.0],
                prefill: &[20_000.0],
                ttft: &[50.0],
            },
        ),
        (
            3,
            Served {
                model: "gemma",
                gpu: false,
                bucket: "<=8k",
                outcomes: &[("client_cancelled", 1)],
                decode: none,
                prefill: none,
                ttft: none,
            },
        ),
        (
            1,
            Served {
                model: "llama",
                gpu: true,
                bucket: "16k_32k",
                outcomes: &[("backend_error", 2)],
                decode: none,
                prefill: none,
                ttft: none,
            },
        ),
        (
            1,
            Served {
                model: "llama",
                gpu: true,
                bucket: "<=8k",
                outcomes: &[("shutdown", 1)],
                decode: none,
                prefill: none,
                ttft: none,
            },
        ),
    ]
}

/// The rows of [`fleet`], computed by hand, in `fastest`'s order.
fn fleet_rows() -> Vec<Json> {
    vec![
        // One decode in (300, 500]: its middle, and a tenth into it; one
        // prompt in (10000, 25000]; one first token in (25, 50].
        fastest_row(
            ("mistral", Some(RTX), "cuda", "8k_16k"),
            1,
            1,
            Some((400.0, 300.0 + 200.0 * 0.1)),
            Some(17_500.0),
            Some((37.5, 25.0 + 25.0 * 0.9)),
            1,
        ),
        // Two identical nodes. Decode: (30, 50]: 2, (50, 75]: 2,
        // (75, 100]: 1, (100, 150]: 1; the p50 (rank 3 of 6) half-way
        // into (50, 75]: 62.5; the p10 (rank 0.6) 0.3 into (30, 50]: 36.
        // Prefill: (1000, 2500]: 4, (2500, 5000]: 2: rank 3, 3/4 into the
        // first: 2125. First token: (250, 500]: 2, (500, 1000]: 1: p50
        // rank 1.5 of the 2 in (250, 500]: 437.5; p90 rank 2.7: 0.7 into
        // (500, 1000]: 850.
        fastest_row(
            ("qwen", Some(RTX), "cuda", "<=8k"),
            9,
            6,
            Some((62.5, 36.0)),
            Some(2125.0),
            Some((437.5, 850.0)),
            2,
        ),
        // Decode (5, 10]: 2, (10, 20]: 1: rank 1.5 and 0.3 of the 2 in
        // (5, 10]; prefill (50, 100]: 3; no streamed request.
        fastest_row(
            ("qwen", None, "cpu", "<=8k"),
            3,
            3,
            Some((8.75, 5.75)),
            Some(75.0),
            None,
            1,
        ),
        // No request answered in full: no speed; after those with one, by
        // model, GPU, device and context bucket (as text).
        fastest_row(("gemma", None, "cpu", "<=8k"), 1, 0, None, None, None, 1),
        fastest_row(
            ("llama", Some(RTX), "cuda", "16k_32k"),
            2,
            0,
            None,
            None,
            None,
            1,
        ),
        fastest_row(
            ("llama", Some(RTX), "cuda", "<=8k"),
            1,
            0,
            None,
            None,
            None,
            1,
        ),
    ]
}

#[tokio::test]
async fn fastest_answers_exactly_in_its_order_with_its_options() {
    let dir = TestDir::new("fastest");
    let server = collector(&dir).await;
    let (start, time) = (at(DAY, 1), at(DAY, 2));
    for (node, served) in fleet() {
        let answer = export(
            &server,
            &request(&Node::new(node), served.metrics(start, time)),
        )
        .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.rejected(), 0, "{:?}", answer.response());
    }
    server.shutdown().await;
    let expected = fleet_rows();
    let all = report(&dir, ReportOptions::default());
    assert_rows(&all, &expected);
    // Inference data alone: every other question is empty, and the nodes
    // behind the requests are the report's.
    for question in survey_collector::report::QUESTIONS {
        if question.key != "fastest" {
            assert_eq!(all[question.key], json!([]), "{}", question.key);
        }
    }
    let store = Store::open_read_only(&dir.db()).unwrap();
    let built = survey_collector::Report::build(&store, ReportOptions::default()).unwrap();
    assert_eq!(built.nodes, 4);
    assert_eq!(built.answer("fastest").unwrap().columns(), COLUMNS);
    drop(store);

    // --min-requests leaves out rows backed by fewer requests (of any
    // outcome), and nothing else.
    let at_least = |n: u64| {
        report(
            &dir,
            ReportOptions {
                min_requests: n,
                ..ReportOptions::default()
            },
        )
    };
    assert_rows(
        &at_least(2),
        &[
            expected[1].clone(),
            expected[2].clone(),
            expected[4].clone(),
        ],
    );
    assert_rows(&at_least(9), &[expected[1].clone()]);
    assert_rows(&at_least(10), &[]);
    assert_rows(&at_least(0), &expected);
    // Rows left out by the minimums are not a lack of inference data.
    for args in [["--min-requests", "10"], ["--min-nodes", "9"]] {
        let output = collector_report(&dir.db(), &["--question", "fastest", args[0], args[1]]);
        assert!(output.status.success());
        let table = String::from_utf8(output.stdout).unwrap();
        assert!(table.contains("(No data in this window.)"), "{table}");
        assert!(!table.contains("prompt_shape_metrics"), "{table}");
        let output = collector_report(&dir.db(), &["--format", "json", args[0], args[1]]);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.contains("prompt_shape_metrics"), "{stderr}");
    }
    // --min-launches is not about requests.
    let launches = report(
        &dir,
        ReportOptions {
            min_launches: 100,
            ..ReportOptions::default()
        },
    );
    assert_rows(&launches, &expected);

    // On the command line, in the table's title.
    let output = collector_report(&dir.db(), &["--format", "json", "--min-requests", "2"]);
    assert!(output.status.success());
    let json: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows(&json, "fastest").len(), 3);
    let output = collector_report(&dir.db(), &["--min-requests", "3"]);
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("; inference rows with at least 3 requests"),
        "{table}"
    );
    assert!(!table.contains("llama"), "{table}");

    // --min-nodes suppresses, and counts, every row behind fewer nodes.
    let output = collector_report(&dir.db(), &["--format", "json", "--min-nodes", "2"]);
    assert!(output.status.success());
    let published: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_rows(&published, &[expected[1].clone()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("note: 5 rows backed by fewer than 2 node processes are not shown"),
        "{stderr}"
    );
    let output = collector_report(&dir.db(), &["--min-nodes", "2", "--question", "fastest"]);
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("(5 rows backed by fewer than 2 node processes not shown)"),
        "{table}"
    );
    assert!(!table.contains("mistral"), "{table}");
    // Suppressed, then a minimum of requests: both apply.
    let output = collector_report(
        &dir.db(),
        &[
            "--format",
            "json",
            "--min-nodes",
            "2",
            "--min-requests",
            "10",
        ],
    );
    let none: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(none["fastest"], json!([]));
}

#[tokio::test]
async fn a_window_cuts_the_inference_streams() {
    let dir = TestDir::new("fastest-window");
    let server = collector(&dir).await;
    let node = Node::new(1);
    let start = at(DAY, 0);
    // Day 0: two requests at 40 tokens/s. Day 2: two more at 60.
    for (day, ok, decode) in [
        (DAY, 2, &[40.0, 40.0][..]),
        (DAY + 2, 4, &[40.0, 40.0, 60.0, 60.0][..]),
    ] {
        let served = Served {
            model: "qwen",
            gpu: true,
            bucket: "<=8k",
            outcomes: &[("ok", ok)],
            decode,
            prefill: &[],
            ttft: &[],
        };
        let answer = export(&server, &request(&node, served.metrics(start, at(day, 6)))).await;
        assert_eq!(answer.rejected(), 0, "{:?}", answer.response());
    }
    server.shutdown().await;
    let row = |requests, decode| {
        fastest_row(
            ("qwen", Some(RTX), "cuda", "<=8k"),
            requests,
            requests,
            decode,
            None,
            None,
            1,
        )
    };
    // Both days: (30, 50]: 2, (50, 75]: 2.
    let both = row(4, Some((50.0, 34.0)));
    // Day 0: two in (30, 50].
    let first = row(2, Some((40.0, 32.0)));
    // Day 2: the two that came after, in (50, 75].
    let last = row(2, Some((62.5, 52.5)));
    let window = |since: Option<i64>, until: Option<i64>| {
        report(
            &dir,
            ReportOptions {
                since: since.map(Day),
                until: until.map(Day),
                ..ReportOptions::default()
            },
        )
    };
    for (since, until, expected) in [
        (None, None, vec![both.clone()]),
        (Some(DAY), None, vec![both]),
        (Some(DAY), Some(DAY + 1), vec![first.clone()]),
        // --until is exclusive: day 2 is not in it.
        (None, Some(DAY + 2), vec![first]),
        // A window between the points has no request: no row.
        (Some(DAY + 1), Some(DAY + 2), vec![]),
        // --since is inclusive.
        (Some(DAY + 2), None, vec![last.clone()]),
        (Some(DAY + 1), Some(DAY + 3), vec![last]),
        (Some(DAY + 3), None, vec![]),
        (None, Some(DAY), vec![]),
    ] {
        let report = window(since, until);
        let found = rows(&report, "fastest");
        assert_eq!(
            found.len(),
            expected.len(),
            "[{since:?}, {until:?}): {report:#}"
        );
        for (row, expected) in found.iter().zip(&expected) {
            assert_row(row, expected);
        }
    }
}
