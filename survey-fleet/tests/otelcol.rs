//! `otelcol-survey` on the shipped config: it validates (auth off, and on
//! with the `auth.yaml` overlay), and, running, refuses what deploy/README.md
//! says it refuses: a request without the token or with another one
//! (401), a body over the receiver's limit, compressed or not (400), plain
//! HTTP on its TLS port. The answers to what survey sends are in
//! `clickhouse.rs`, which replays a fleet through the same pipeline.

mod support;

use std::process::{Command, Output};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::time::Duration;
use support::pipeline::{ClickHouse, Collector, TOKEN, Tls, otelcol_binary};
use survey_fleet::fleet::{self, Fleet};
use survey_test_support::binaries::workspace;
use survey_test_support::otlp::gzip;
use survey_test_support::{Receiver, TestDir};
use tokio::task::block_in_place;

/// `otelcol-survey validate` on the shipped files, with `env`.
fn validate(files: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(otelcol_binary());
    command.arg("validate");
    for file in files {
        command
            .arg("--config")
            .arg(workspace().join("deploy/otelcol").join(file));
    }
    command
        .env_remove("SURVEY_BEARER_TOKEN")
        .env("SURVEY_TLS_CERT", "/nonexistent/cert.pem")
        .env("SURVEY_TLS_KEY", "/nonexistent/key.pem")
        .env("SURVEY_CLICKHOUSE_ENDPOINT", "http://127.0.0.1:8123")
        .env("SURVEY_CLICKHOUSE_USER", "survey")
        .env("SURVEY_CLICKHOUSE_PASSWORD", "x");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("otelcol-survey runs")
}

#[test]
fn the_shipped_config_validates_with_auth_off_and_on() {
    let off = validate(&["config.yaml"], &[]);
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    let on = validate(
        &["config.yaml", "auth.yaml"],
        &[("SURVEY_BEARER_TOKEN", "t0k3n")],
    );
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    // Auth on without its token is an error that says so.
    let no_token = validate(&["config.yaml", "auth.yaml"], &[]);
    assert!(!no_token.status.success());
    let stderr = String::from_utf8_lossy(&no_token.stderr);
    assert!(stderr.contains("bearertokenauth"), "{stderr}");
    // validate really reads the OTTL: a broken statement fails it.
    let dir = TestDir::new("otelcol-validate");
    let broken = std::fs::read_to_string(workspace().join("deploy/otelcol/config.yaml"))
        .unwrap()
        .replacen("where Len(", "where Lenn(", 1);
    let path = dir.join("broken.yaml");
    std::fs::write(&path, broken).unwrap();
    let output = validate(&[path.to_str().unwrap()], &[]);
    assert!(
        !output.status.success(),
        "a misspelt OTTL function validated"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Lenn"), "{stderr}");
}

/// The committed Go sources are builder.yaml's distribution: every module
/// it names is required at its version in go.mod and its factory is in
/// components.go (or main.go, for the configuration providers), and no
/// collector module is at another release.
#[test]
fn the_sources_build_exactly_the_manifest() {
    let dir = workspace().join("deploy/otelcol");
    let manifest = std::fs::read_to_string(dir.join("builder.yaml")).unwrap();
    let go_mod = std::fs::read_to_string(dir.join("otelcol-survey/go.mod")).unwrap();
    let code = std::fs::read_to_string(dir.join("otelcol-survey/components.go")).unwrap()
        + &std::fs::read_to_string(dir.join("otelcol-survey/main.go")).unwrap();
    let modules: Vec<(&str, &str)> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- gomod: "))
        .map(|l| l.split_once(' ').unwrap())
        .collect();
    assert!(modules.len() >= 9, "{modules:?}");
    for (module, version) in &modules {
        assert!(
            go_mod.contains(&format!("\t{module} {version}\n")),
            "go.mod does not require {module} {version}"
        );
        assert!(
            code.contains(&format!("\"{module}\"")),
            "{module} is not built in"
        );
        // One release: v0.161.0, or v1.67.0 for the stable modules.
        assert!(
            ["v0.161.0", "v1.67.0"].contains(version),
            "{module} is at {version}"
        );
    }
    for line in go_mod.lines() {
        let line = line.trim();
        let is_collector = line.starts_with("go.opentelemetry.io/collector")
            || line.starts_with("github.com/open-telemetry/opentelemetry-collector-contrib");
        if is_collector {
            let version = line.split_whitespace().nth(1).unwrap();
            assert!(["v0.161.0", "v1.67.0"].contains(&version), "go.mod: {line}");
        }
    }
    let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    assert!(config.contains("release v0.161.0"));
}

/// Text with every run of white space made one space, and none inside
/// brackets.
fn normalized(sql: &str) -> String {
    sql.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(" )", ")")
}

/// schema.sql's three exporter tables are the DDL the pinned exporter runs
/// when `create_schema` is true: its templates (from the Go module cache)
/// rendered with database "survey", no cluster,
/// the engine MergeTree() and a 30-day TTL on the time.
#[test]
fn the_exporter_tables_are_the_pinned_release_s_ddl() {
    // The module's folder, downloaded if the cache lacks it.
    let download = Command::new("go")
        .args([
            "mod",
            "download",
            "-json",
            "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/clickhouseexporter",
        ])
        .current_dir(workspace().join("deploy/otelcol/otelcol-survey"))
        .output()
        .expect("go runs");
    assert!(
        download.status.success(),
        "{}",
        String::from_utf8_lossy(&download.stderr)
    );
    let module: serde_json::Value = serde_json::from_slice(&download.stdout).unwrap();
    assert_eq!(module["Version"], "v0.161.0");
    let templates =
        std::path::Path::new(module["Dir"].as_str().unwrap()).join("internal/sqltemplates");
    let schema = std::fs::read_to_string(workspace().join("deploy/clickhouse/schema.sql")).unwrap();
    for kind in ["sum", "gauge", "histogram"] {
        let template = std::fs::read_to_string(templates.join(format!("metrics_{kind}_table.sql")))
            .unwrap_or_else(|e| panic!("{}: {e}", templates.display()));
        let table = format!("otel_metrics_{kind}");
        let rendered = template
            .replacen(
                "\"%s\".\"%s\" %s (",
                &format!("\"survey\".\"{table}\" ("),
                1,
            )
            .replacen("ENGINE = %s", "ENGINE = MergeTree()", 1)
            .replacen("%s", "TTL toDateTime(TimeUnix) + toIntervalDay(30)", 1);
        assert!(!rendered.contains("%s"), "{rendered}");
        let start = schema
            .find(&format!(
                "CREATE TABLE IF NOT EXISTS \"survey\".\"{table}\""
            ))
            .unwrap_or_else(|| panic!("schema.sql has no {table}"));
        let end = start + schema[start..].find(';').unwrap();
        assert_eq!(
            normalized(&schema[start..end]),
            normalized(rendered.trim().trim_end_matches(';')),
            "{table}"
        );
    }
}

/// One real node's exports (a one-node fleet), the largest first.
fn real_exports() -> Vec<ExportMetricsServiceRequest> {
    let receiver = Receiver::start();
    let fleet = Fleet {
        nodes: 1,
        launches: 2,
        seed: 5,
        parallel: 1,
    };
    fleet::run(
        std::path::Path::new(env!("CARGO_BIN_EXE_survey-fleet")),
        &receiver.endpoint(),
        fleet,
    )
    .expect("the fleet runs");
    let mut exports: Vec<ExportMetricsServiceRequest> = receiver
        .requests()
        .into_iter()
        .map(|r| r.decoded.expect("every export decodes"))
        .collect();
    receiver.stop();
    exports.sort_by_key(|r| std::cmp::Reverse(r.encoded_len()));
    exports
}

/// `request` grown past the receiver's 4 MiB limit by a long description
/// (which the config would empty: the rest of it passes).
fn oversized(request: &ExportMetricsServiceRequest) -> Vec<u8> {
    let mut request = request.clone();
    request.resource_metrics[0].scope_metrics[0].metrics[0].description =
        "x".repeat(4 * 1024 * 1024 + 1);
    request.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_refuses_what_the_readme_says() {
    let dir = TestDir::new("otelcol-refuses");
    let tls = Tls::create(&dir);
    let clickhouse = block_in_place(|| ClickHouse::start(&dir.join("clickhouse")));
    let collector =
        block_in_place(|| Collector::start(&dir.join("otelcol"), &tls, &clickhouse, ""));
    let client = tls.client();
    let post = |body: Vec<u8>, token: Option<&str>, gzipped: bool| {
        let mut request = client
            .post(collector.metrics_url())
            .header("content-type", "application/x-protobuf")
            .body(body);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if gzipped {
            request = request.header("content-encoding", "gzip");
        }
        async move { request.send().await.map(|a| a.status().as_u16()) }
    };
    let exports = block_in_place(real_exports);
    let honest = exports[0].encode_to_vec();
    // An empty request is a valid one: 200 with the token.
    assert_eq!(post(Vec::new(), Some(TOKEN), false).await.unwrap(), 200);
    // A real export without the token, or with another: 401.
    assert_eq!(post(honest.clone(), None, false).await.unwrap(), 401);
    assert_eq!(
        post(honest.clone(), Some("another"), false).await.unwrap(),
        401
    );
    assert_eq!(
        post(honest.clone(), Some(&TOKEN.to_uppercase()), false)
            .await
            .unwrap(),
        401
    );
    // Over the body limit: 400, sent as it is or gzipped (the limit holds
    // for the inflated body).
    let big = oversized(&exports[0]);
    assert_eq!(post(big.clone(), Some(TOKEN), false).await.unwrap(), 400);
    let small = gzip(&big);
    assert!(small.len() < 100_000);
    assert_eq!(post(small, Some(TOKEN), true).await.unwrap(), 400);
    // Without the token, the limit is not even reached: 401.
    assert_eq!(post(big, None, false).await.unwrap(), 401);
    // Plain HTTP on the TLS port: Go's TLS server answers 400 and serves
    // nothing.
    let plain = reqwest::Client::new()
        .post(collector.metrics_url().replace("https://", "http://"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-protobuf")
        .body(honest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    // Nothing of the refused requests reached ClickHouse ...
    let exported = block_in_place(|| collector.drained(Duration::from_secs(30)));
    assert_eq!(exported, 0);
    assert_eq!(block_in_place(|| clickhouse.rows_stored(None)), 0);
    // ... and the same export, with the token, arrives whole.
    assert_eq!(post(honest, Some(TOKEN), false).await.unwrap(), 200);
    let exported = block_in_place(|| collector.drained(Duration::from_secs(30)));
    let points = block_in_place(|| clickhouse.rows_stored(None));
    assert!(points > 10, "{points} rows");
    assert_eq!(points, exported);
    drop(collector);
    drop(clickhouse);
}
