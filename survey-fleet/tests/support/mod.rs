//! Shared pieces of survey-fleet's tests.

// Each test binary uses its part of this module.
#![allow(dead_code)]

pub mod pipeline;

use std::process::Command;

/// What `command` writes to its standard output. It must succeed; if it
/// does not, its standard error is the failure's message.
pub fn stdout_of(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} does not run: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// survey-collector's JSON reports, one per window (`since`, `until` in
/// UTC days; `None`: no bound; every row kept), over `requests` sent to a
/// fresh `survey-collector serve` with its database in `dir`. Each request
/// must be taken whole.
pub async fn collector_reports(
    dir: &std::path::Path,
    requests: &[opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest],
    windows: &[(Option<i64>, Option<i64>)],
) -> Vec<serde_json::Value> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    use prost::Message;
    use survey_collector::{Day, Report, ReportOptions, ServeConfig, Server, Store};
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(dir).unwrap();
    let server = Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.join("survey.db"),
        tokens: Default::default(),
        tls: None,
        retention: std::time::Duration::from_secs(48 * 3600),
        limits: Default::default(),
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    for request in requests {
        let answer = client
            .post(format!("{}/v1/metrics", server.endpoint()))
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let rejected = ExportMetricsServiceResponse::decode(answer.bytes().await.unwrap())
            .unwrap()
            .partial_success
            .map_or(0, |p| p.rejected_data_points);
        assert_eq!(rejected, 0, "an export was refused in part");
    }
    server.shutdown().await;
    let store = Store::open_read_only(&dir.join("survey.db")).unwrap();
    windows
        .iter()
        .map(|(since, until)| {
            Report::build(
                &store,
                ReportOptions {
                    since: since.map(Day),
                    until: until.map(Day),
                    min_launches: 0,
                    min_requests: 0,
                    min_nodes: 1,
                },
            )
            .unwrap()
            .to_json()
        })
        .collect()
}
