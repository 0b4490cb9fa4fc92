//! What a person running a node sees of survey: `mesh-llm survey show`
//! prints exactly what the collector decoded, local mode shows what would be
//! sent and sends nothing, and failing exports leave one warning in the
//! node's log, not one line per export.

use std::time::Duration;

use survey_test_support::mesh::*;
use survey_test_support::*;

/// `mesh-llm survey show --json`, or `None` while the node has no export.
fn show(node: &Node) -> Option<mesh_llm::api::SurveyExport> {
    let out = node.cli(&["survey", "show", "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("survey show --json"))
}

/// The rows of `mesh-llm survey show --json`.
fn show_json(node: &Node) -> Option<Vec<survey::SentRow>> {
    show(node).map(|shown| shown.export.rows)
}

#[test]
fn survey_show_prints_what_the_collector_decoded() {
    let dir = TestDir::new("show");
    let receiver = Receiver::start();
    let node = Node::start(&dir, &telemetry_for(&receiver, ""), NodeOptions::default());
    node.wait_started();
    node.load(&qwen(&dir), &[]);
    node.unload("Qwen3-8B-Q4_K_M");
    node.load(&qwen(&dir), &[]);
    // `--json` prints what a request the collector decoded holds.
    let shown = wait_until(
        "survey show --json equal to an export that arrived",
        Duration::from_secs(20),
        || {
            let printed = show_json(&node)?;
            let printed = sorted_lines(printed.iter().map(Point::from_sent));
            let arrived = receiver
                .requests()
                .iter()
                .any(|r| sorted_lines(r.points()) == printed);
            (arrived
                && printed
                    .iter()
                    .any(|p| p.starts_with(survey::schema::UNLOAD_TOTAL)))
            .then_some(printed)
        },
    );
    for metric in [
        survey::schema::LAUNCH_TOTAL,
        survey::schema::LAUNCH_SUCCESS_TOTAL,
        survey::schema::LAUNCH_DURATION_MS,
        survey::schema::UNLOAD_TOTAL,
        survey::schema::UPTIME_S,
        survey::schema::LOADED_MODELS,
    ] {
        assert!(
            shown.iter().any(|p| p.starts_with(&format!("{metric} "))),
            "{metric}: {shown:#?}"
        );
    }

    // The opt-in inference metrics: off unless configured.
    assert!(!show(&node).unwrap().prompt_shape_metrics);
    // Idle now: the next exports equal what the collector holds and are
    // left out until the heartbeat, and `survey show` says so.
    let table = wait_until(
        "survey show of an export left out",
        Duration::from_secs(20),
        || {
            let out = node.cli(&["survey", "show"]);
            assert!(out.status.success());
            let table = String::from_utf8(out.stdout).unwrap();
            table.contains(", unchanged since ").then_some(table)
        },
    );
    assert!(table.starts_with("last export: collected "), "{table}");
    assert!(
        table.contains("\ninference metrics (telemetry.prompt_shape_metrics): off\n"),
        "{table}"
    );
    let first = table.lines().next().unwrap();
    assert!(
        first.contains(" UTC, not sent; heartbeat in 59 min, ")
            || first.contains(" UTC, not sent; heartbeat in 60 min, "),
        "{first}"
    );
    assert!(
        node.status().survey.contains(" unchanged (not sent) "),
        "{}",
        node.status().survey
    );
    assert!(table.contains("service.instance.id="), "{table}");
    for metric in [
        survey::schema::LAUNCH_SUCCESS_TOTAL,
        survey::schema::UNLOAD_TOTAL,
        survey::schema::LAUNCH_DURATION_MS,
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("{metric} in {table}"));
        assert!(line.contains(" Qwen3-8B-Q4_K_M "), "{line}");
        assert!(line.contains("mesh_llm.architecture=qwen3"), "{line}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("sum ") && l.contains("buckets <=")),
        "{table}"
    );
    node.stop();
}

#[test]
fn local_mode_shows_what_would_be_sent_and_sends_nothing() {
    let dir = TestDir::new("local");
    let receiver = Receiver::start();
    let endpoint = receiver.endpoint();
    // No plugin entry: local mode opts in by itself. The endpoints in the
    // config and the environment are not used.
    let config = format!(
        "[telemetry]\nmode = \"local\"\nendpoint = \"{endpoint}\"\nexport_interval_secs = 0.3\n"
    );
    let node = Node::start(
        &dir,
        &config,
        NodeOptions {
            env: &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
            ..NodeOptions::default()
        },
    );
    node.wait_started();
    node.load(&qwen(&dir), &[]);
    let rows = wait_until(
        "a local collection with the launch",
        Duration::from_secs(20),
        || {
            show_json(&node).filter(|rows| {
                rows.iter()
                    .any(|r| r.metric == survey::schema::LAUNCH_SUCCESS_TOTAL)
            })
        },
    );
    assert!(rows.iter().any(|r| r.metric == survey::schema::MODEL_LOADED
        && r.attributes.get("mesh_llm.model").map(|v| v.to_string())
            == Some("Qwen3-8B-Q4_K_M".into())));
    let out = node.cli(&["survey", "show"]);
    let table = String::from_utf8(out.stdout).unwrap();
    // The first collection is kept as what would be sent; the next ones,
    // unchanged, as what would not be, until the heartbeat.
    assert!(
        table.contains("local (not sent)") || table.contains(", unchanged since "),
        "{table}"
    );
    node.assert_survey_says("nothing is sent");
    node.stop();
    assert!(receiver.requests().is_empty(), "local mode sent a request");
}

/// The count in survey's status text: `failing (N in a row)`.
fn failing_in_a_row(survey: &str) -> u64 {
    survey
        .split_once("failing (")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn failing_exports_leave_one_warning_in_the_node_log_and_one_line_on_recovery() {
    let dir = TestDir::new("health");
    let receiver = Receiver::start();
    let addr = receiver.addr();
    // An export a second, each with a second to answer: on slow machines
    // too, an export after recovery succeeds.
    let telemetry = format!(
        "[telemetry]\nendpoint = \"{}\"\nexport_interval_secs = 1\ntimeout_secs = 1\n",
        receiver.endpoint()
    );
    receiver.stop();
    let node = Node::start(&dir, &telemetry, NodeOptions::default());
    node.wait_started();
    node.load(&qwen(&dir), &[]);
    // Several exports fail.
    node.wait_status(Duration::from_secs(20), |s| {
        failing_in_a_row(&s.survey) >= 3
    });
    let receiver = Receiver::start_on(addr).unwrap();
    wait_until(
        "the recovery in the node's log",
        Duration::from_secs(20),
        || node.stderr().contains("succeed again").then_some(()),
    );
    let log = node.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("survey: exports to"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    survey_test_support::host::assert_outage_logged(&lines, "succeed again after");
    node.stop();
    drop(receiver);
}

#[test]
fn survey_show_explains_why_there_is_nothing_to_show() {
    let dir = TestDir::new("show-off");
    let node = Node::start(&dir, "", NodeOptions::default());
    node.wait_started();
    let out = node.cli(&["survey", "show"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("survey: disabled (not enabled"), "{stderr}");
    node.stop();
}
