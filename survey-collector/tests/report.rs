//! Real survey nodes (child processes with the real exporter) export to
//! `survey-collector serve`; `survey-collector report` answers the spec's
//! six questions, checked field by field against the nodes' scripts, and
//! says in every form why the seventh, `fastest`, has no row (the nodes
//! record no inference data).

mod node;

use std::process::Command;

use serde_json::{Value as Json, json};
use survey_collector::report::{NO_INFERENCE_DATA, QUESTIONS};
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

/// The 95% Wilson interval of `k` successes out of `n`.
fn wilson(k: f64, n: f64) -> (f64, f64) {
    let z = 1.96_f64;
    let p = k / n;
    let center = p + z * z / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    let scale = 1.0 + z * z / n;
    ((center - margin) / scale, (center + margin) / scale)
}

fn close(a: &Json, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_answers_every_question_from_real_exports() {
    let dir = TestDir::new("report");
    let server = collector(&dir).await;
    let endpoint = server.endpoint();
    let day_before = today();
    // Two identical GPU nodes and one CPU node, all at once.
    let children: Vec<_> = ["gpu", "gpu", "cpu"]
        .into_iter()
        .map(|script| node::spawn("node_child", script, &endpoint))
        .collect();
    for child in children {
        node::finished(child, "a node").await;
    }

    // The report runs while serve is still running (WAL).
    let output = collector_report(&dir.db(), &["--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Json = serde_json::from_slice(&output.stdout).expect("stdout is only JSON");
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 7, "{keys:?}");
    // A key per question, in the questions' order.
    let text = String::from_utf8_lossy(&output.stdout);
    let at: Vec<usize> = QUESTIONS
        .iter()
        .map(|q| text.find(&format!("\n  \"{}\": [", q.key)).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    // No node recorded inference data: `fastest` is an empty list, and
    // the JSON form says why on standard error only.
    assert_eq!(report["fastest"], json!([]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("note: fastest: {NO_INFERENCE_DATA}")),
        "{stderr}"
    );

    // 1. Most launched: launches desc, then model; nodes are processes.
    assert_eq!(
        report["most_launched"],
        json!([
            {"model": "Llama-3.2-1B", "launches": 4, "nodes": 2},
            {"model": "Qwen3-8B-Q4_K_M", "launches": 4, "nodes": 3},
            {"model": "phi-4", "launches": 1, "nodes": 1},
        ]),
        "{report:#}"
    );

    // 2. Failure rate: failures / completed launches, with reasons.
    assert_eq!(
        report["failure_rate"],
        json!([
            {"model": "phi-4", "launches": 1, "successes": 0, "failures": 1,
             "failure_rate": 1.0, "reasons": {"known_kv_cache_crash": 1}, "nodes": 1},
            {"model": "Llama-3.2-1B", "launches": 4, "successes": 2, "failures": 2,
             "failure_rate": 0.5, "reasons": {"health_timeout": 2}, "nodes": 2},
            {"model": "Qwen3-8B-Q4_K_M", "launches": 4, "successes": 3, "failures": 1,
             "failure_rate": 0.25, "reasons": {"spawn_failed": 1}, "nodes": 3},
        ]),
        "{report:#}"
    );

    // 3. Reliable hardware, ranked by the Wilson lower bound.
    let reliable = rows(&report, "reliable_hardware");
    let gpu = || json!("NVIDIA GeForce RTX 4090");
    // model, gpu, device, gpus, launches, successes, failures, exits, reliable, nodes
    let expected = [
        ("Qwen3-8B-Q4_K_M", gpu(), "cuda", 1, 2, 2, 0, 0, 2.0, 2),
        ("Qwen3-8B-Q4_K_M", Json::Null, "cpu", 0, 2, 1, 1, 0, 1.0, 1),
        ("Llama-3.2-1B", gpu(), "cuda", 1, 4, 2, 2, 2, 0.0, 2),
        ("phi-4", Json::Null, "cpu", 0, 1, 0, 1, 0, 0.0, 1),
    ];
    assert_eq!(reliable.len(), expected.len(), "{report:#}");
    for (row, (model, gpu, device, gpus, launches, successes, failures, exits, ok, nodes)) in
        reliable.iter().zip(expected)
    {
        let completed = f64::from(successes + failures);
        let (low, high) = wilson(ok, completed);
        assert_eq!(row["model"], model, "{row}");
        assert_eq!(row["gpu_name"], gpu, "{row}");
        assert_eq!(row["backend_device"], device, "{row}");
        assert_eq!(row["gpu_count"], gpus, "{row}");
        assert_eq!(row["launches"], launches, "{row}");
        assert_eq!(row["successes"], successes, "{row}");
        assert_eq!(row["failures"], failures, "{row}");
        assert_eq!(row["unexpected_exits"], exits, "{row}");
        assert_eq!(row["nodes"], nodes, "{row}");
        assert!(close(&row["reliability"], ok / completed), "{row}");
        assert!(close(&row["reliability_low"], low), "{row} vs {low}");
        assert!(close(&row["reliability_high"], high), "{row} vs {high}");
    }

    // 4. Viable context: per model, GPU and bucket; the exact context of
    // models seen loaded at an export.
    assert_eq!(
        report["viable_context"],
        json!([
            {"model": "Llama-3.2-1B", "gpu_name": "NVIDIA GeForce RTX 4090",
             "context_bucket": "<=8k", "launches": 4, "successes": 2, "failures": 2,
             "success_rate": 0.5, "max_context": null, "nodes": 2},
            {"model": "Qwen3-8B-Q4_K_M", "gpu_name": "NVIDIA GeForce RTX 4090",
             "context_bucket": "16k_32k", "launches": 2, "successes": 2, "failures": 0,
             "success_rate": 1.0, "max_context": 32768, "nodes": 2},
            {"model": "Qwen3-8B-Q4_K_M", "gpu_name": null, "context_bucket": "<=8k",
             "launches": 2, "successes": 1, "failures": 1, "success_rate": 0.5,
             "max_context": 8192, "nodes": 1},
            {"model": "phi-4", "gpu_name": null, "context_bucket": ">128k",
             "launches": 1, "successes": 0, "failures": 1, "success_rate": 0.0,
             "max_context": null, "nodes": 1},
        ]),
        "{report:#}"
    );

    // 5. Unstable: exits per success; uptimes (all under 10 s, the first
    // bucket) read as the bucket's middle.
    assert_eq!(
        report["unstable"],
        json!([
            {"model": "Llama-3.2-1B", "launches": 4, "successes": 2, "unexpected_exits": 2,
             "exits_per_success": 1.0, "uptime_p50_s": 5.0, "nodes": 2},
            {"model": "Qwen3-8B-Q4_K_M", "launches": 4, "successes": 3, "unexpected_exits": 0,
             "exits_per_success": 0.0, "uptime_p50_s": 5.0, "nodes": 3},
        ]),
        "{report:#}"
    );

    // 6. Slow or short: successful launches' p50/p90 interpolated in their
    // buckets: ~120 ms in (100, 250], ~0 ms in (0, 100].
    assert_eq!(
        report["slow_or_short"],
        json!([
            {"model": "Qwen3-8B-Q4_K_M", "gpu_name": "NVIDIA GeForce RTX 4090", "launches": 2,
             "launch_p50_ms": 175.0, "launch_p90_ms": 235.0, "ended": 2, "uptime_p50_s": 5.0,
             "nodes": 2},
            {"model": "Llama-3.2-1B", "gpu_name": "NVIDIA GeForce RTX 4090", "launches": 4,
             "launch_p50_ms": 50.0, "launch_p90_ms": 90.0, "ended": 2, "uptime_p50_s": 5.0,
             "nodes": 2},
            {"model": "Qwen3-8B-Q4_K_M", "gpu_name": null, "launches": 2,
             "launch_p50_ms": 50.0, "launch_p90_ms": 90.0, "ended": 1, "uptime_p50_s": 5.0,
             "nodes": 1},
            {"model": "phi-4", "gpu_name": null, "launches": 1,
             "launch_p50_ms": null, "launch_p90_ms": null, "ended": 0, "uptime_p50_s": null,
             "nodes": 1},
        ]),
        "{report:#}"
    );

    // --min-launches leaves out thin rows, in every question.
    let output = collector_report(&dir.db(), &["--format", "json", "--min-launches", "2"]);
    let thick: Json = serde_json::from_slice(&output.stdout).unwrap();
    for (key, value) in thick.as_object().unwrap() {
        for row in value.as_array().unwrap() {
            assert_ne!(row["model"], "phi-4", "{key}: {row}");
        }
    }
    assert_eq!(rows(&thick, "most_launched").len(), 2);

    // A window without the exports' day is empty; one with it is whole
    // (unless the exports straddled midnight UTC).
    let today = survey_collector::Day(today());
    let tomorrow = survey_collector::Day(today.0 + 1);
    let output = collector_report(
        &dir.db(),
        &["--format", "json", "--since", &tomorrow.to_date()],
    );
    let later: Json = serde_json::from_slice(&output.stdout).unwrap();
    for (key, value) in later.as_object().unwrap() {
        assert_eq!(value, &json!([]), "{key}");
    }
    let output = collector_report(
        &dir.db(),
        &[
            "--format",
            "json",
            "--since",
            &today.to_date(),
            "--until",
            &tomorrow.to_date(),
        ],
    );
    let same: Json = serde_json::from_slice(&output.stdout).unwrap();
    if day_before == today.0 {
        assert_eq!(same, report);
    }

    // The table form: one titled table per question; CPU rows read `cpu`.
    let output = collector_report(&dir.db(), &[]);
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    for question in QUESTIONS {
        assert!(table.contains(question.title), "{table}");
    }
    assert!(table.contains("3 node processes"), "{table}");
    // `fastest` says why it has no row instead of an empty table.
    let fastest = &table[table.find(QUESTIONS[6].title).unwrap()..];
    assert_eq!(
        fastest.lines().nth(2),
        Some(format!("({NO_INFERENCE_DATA})").as_str()),
        "{table}"
    );
    assert!(!table.contains("(No data in this window.)"), "{table}");
    // phi-4's reliable_hardware row: gpu_name `cpu`, backend_device `cpu`.
    assert!(
        table.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.starts_with(&["phi-4", "cpu", "cpu", "0", "1"])
        }),
        "{table}"
    );
    assert!(table.contains("health_timeout=2"), "{table}");

    // --min-nodes: rows behind fewer node processes are never shown, only
    // counted, in every form.
    let output = collector_report(&dir.db(), &["--format", "json", "--min-nodes", "2"]);
    assert!(output.status.success());
    let published: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains("phi-4"));
    let suppressed: usize = [
        "most_launched",
        "failure_rate",
        "reliable_hardware",
        "viable_context",
        "unstable",
        "slow_or_short",
    ]
    .iter()
    .map(|key| rows(&report, key).len() - rows(&published, key).len())
    .sum();
    // phi-4 everywhere (5 rows; it is not in `unstable`), and Qwen3 on cpu
    // in reliable_hardware, viable_context and slow_or_short.
    assert_eq!(suppressed, 8, "{published:#}");
    for (key, value) in published.as_object().unwrap() {
        for row in value.as_array().unwrap() {
            assert!(row["nodes"].as_u64().unwrap() >= 2, "{key}: {row}");
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("8 rows backed by fewer than 2 node processes are not shown"),
        "{stderr}"
    );
    let output = collector_report(&dir.db(), &["--min-nodes", "2"]);
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(!table.contains("phi-4"), "{table}");
    assert!(
        table.contains("(2 rows backed by fewer than 2 node processes not shown)"),
        "{table}"
    );
    assert!(
        table.contains("(1 row backed by fewer than 2 node processes not shown)"),
        "{table}"
    );
    let output = collector_report(&dir.db(), &["--format", "html", "--min-nodes", "2"]);
    let html = String::from_utf8(output.stdout).unwrap();
    assert!(!html.contains("phi-4"));
    assert!(html.contains("2 rows backed by fewer than 2 node processes not shown."));
    let fastest = &html[html.find("<section id=\"fastest\">").unwrap()..];
    assert!(
        fastest.contains(
            "<p class=\"note\">No inference data in this window: nodes record it only with \
             [telemetry] prompt_shape_metrics = true.</p>"
        ),
        "{fastest}"
    );
    assert!(!fastest.contains("<svg"), "{fastest}");

    // CSV: one file per question; reasons spread over a column each.
    let csv_dir = dir.path().join("csv");
    let output = collector_report(
        &dir.db(),
        &["--format", "csv", "--out", csv_dir.to_str().unwrap()],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for question in QUESTIONS {
        assert!(
            csv_dir.join(format!("{}.csv", question.key)).is_file(),
            "{}",
            question.key
        );
    }
    // An empty answer is a header alone; why is said on standard error.
    assert_eq!(
        std::fs::read_to_string(csv_dir.join("fastest.csv")).unwrap(),
        "model,gpu_name,backend_device,context_bucket,requests,ok,decode_tps_p50,\
         decode_tps_p10,prefill_tps_p50,ttft_p50_ms,ttft_p90_ms,nodes\r\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("note: fastest: {NO_INFERENCE_DATA}")),
        "{stderr}"
    );
    let failure = std::fs::read_to_string(csv_dir.join("failure_rate.csv")).unwrap();
    let lines: Vec<&str> = failure.lines().collect();
    assert_eq!(
        lines[0],
        "model,launches,successes,failures,failure_rate,reasons.spawn_failed,\
         reasons.health_timeout,reasons.exited_before_healthy,reasons.backend_proxy_failed,\
         reasons.capacity_rejected,reasons.known_kv_cache_crash,reasons.mmproj_missing,\
         reasons.other,nodes"
    );
    assert_eq!(lines[1], "phi-4,1,0,1,1.0,0,0,0,0,0,1,0,0,1");
    assert_eq!(lines[2], "Llama-3.2-1B,4,2,2,0.5,0,2,0,0,0,0,0,0,2");
    assert_eq!(lines[3], "Qwen3-8B-Q4_K_M,4,3,1,0.25,1,0,0,0,0,0,0,0,3");
    let output = collector_report(
        &dir.db(),
        &["--format", "csv", "--question", "most_launched"],
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "model,launches,nodes\r\nLlama-3.2-1B,4,2\r\nQwen3-8B-Q4_K_M,4,3\r\nphi-4,1,1\r\n"
    );
    let output = collector_report(&dir.db(), &["--format", "json", "--question", "unstable"]);
    let one: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        one.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["unstable"]
    );

    server.shutdown().await;
}

#[test]
fn report_arguments_are_checked() {
    let dir = TestDir::new("report-args");
    let output = collector_report(&dir.db(), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(!dir.db().exists(), "report never creates a database");

    let output = collector_report(&dir.db(), &["--since", "2026-02-30"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--since") && stderr.contains("YYYY-MM-DD"),
        "{stderr}"
    );

    drop(survey_collector::Store::open(&dir.db()).unwrap());
    let output = collector_report(
        &dir.db(),
        &["--since", "2026-02-03", "--until", "2026-02-03"],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("must be before --until"), "{stderr}");

    let output = collector_report(&dir.db(), &["--format", "csv"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--out DIR") && stderr.contains("--question NAME"),
        "{stderr}"
    );

    let output = collector_report(&dir.db(), &["--question", "fastest_model"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown question \"fastest_model\"")
            && stderr.contains("slow_or_short, fastest"),
        "{stderr}"
    );

    let output = collector_report(&dir.db(), &["--min-requests", "some"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--min-requests"));

    // --help lists every question and the inference option.
    let output = Command::new(binaries::survey_collector())
        .args(["report", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for question in QUESTIONS {
        assert!(help.contains(question.key), "{help}");
    }
    assert!(
        help.contains("--min-requests <N>") && help.contains("inference requests"),
        "{help}"
    );

    let output = collector_report(&dir.db(), &["--min-nodes", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--min-nodes"));

    let output = collector_report(&dir.db(), &["--format", "xml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--format") && stderr.contains("json"),
        "{stderr}"
    );

    // An empty database: an empty list per question.
    let output = collector_report(&dir.db(), &["--format", "json"]);
    assert!(output.status.success());
    let empty: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(empty.as_object().unwrap().len(), QUESTIONS.len());
    for (key, value) in empty.as_object().unwrap() {
        assert_eq!(value, &json!([]), "{key}");
    }
}
