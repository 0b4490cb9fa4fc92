//! `otelcol-survey` on the shipped config: it validates (auth off, and on
//! with the `auth.yaml` overlay), and, running, refuses what the README
//! says it refuses: a request without the token or with another one
//! (401), a body over the receiver's limit, compressed or not (400), plain
//! HTTP on its TLS port. The answers to what survey sends are in
//! `clickhouse.rs`, which replays a fleet through the same pipeline.

mod support;

use std::io::Write;
use std::process::{Command, Output};

use support::pipeline::{ClickHouse, Collector, TOKEN, Tls, otelcol_binary, workspace};
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
    let dir = std::env::temp_dir().join(format!("survey-otelcol-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    let _ = std::fs::remove_dir_all(&dir);
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
/// when `create_schema` is true: its templates (read from the Go module
/// cache the build filled) rendered with database "survey", no cluster,
/// the engine MergeTree() and a 30-day TTL on the time.
#[test]
fn the_exporter_tables_are_the_pinned_release_s_ddl() {
    otelcol_binary();
    let cache = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .expect("go runs");
    let templates = std::path::PathBuf::from(String::from_utf8(cache.stdout).unwrap().trim()).join(
        "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/\
         clickhouseexporter@v0.161.0/internal/sqltemplates",
    );
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

/// A well-formed OTLP request of 4 MiB and a bit (the receiver's
/// `max_request_body_size` is 4 MiB): one gauge whose description is long.
fn oversized_request() -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    };
    use prost::Message;
    let metric = Metric {
        name: "mesh_llm_model_context_length".into(),
        description: "x".repeat(4 * 1024 * 1024 + 1),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint::default()],
        })),
        ..Metric::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
    .encode_to_vec()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_refuses_what_the_readme_says() {
    let dir = std::env::temp_dir().join(format!("survey-otelcol-refuses-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
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
    // An empty request is a valid one: 200 with the token, 401 without it
    // or with another.
    assert_eq!(post(Vec::new(), Some(TOKEN), false).await.unwrap(), 200);
    assert_eq!(post(Vec::new(), None, false).await.unwrap(), 401);
    assert_eq!(post(Vec::new(), Some("another"), false).await.unwrap(), 401);
    assert_eq!(
        post(Vec::new(), Some(&TOKEN.to_uppercase()), false)
            .await
            .unwrap(),
        401
    );
    // Over the body limit: 400, sent as it is or gzipped (the limit holds
    // for the decompressed body).
    let big = oversized_request();
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
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    // Nothing of the refused requests reached ClickHouse.
    let exported = block_in_place(|| collector.drained(std::time::Duration::from_secs(30)));
    assert_eq!(exported, 0);
    drop(collector);
    drop(clickhouse);
    let _ = std::fs::remove_dir_all(&dir);
}
