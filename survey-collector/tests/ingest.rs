//! The endpoint as a sender sees it: every status the OTLP/HTTP
//! specification asks for, partial success, tokens, size and point limits,
//! and the real exporter's JSON encoding.

mod node;

use prost::Message;
use serde_json::json;
use survey_collector::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use survey_collector::otlp::metrics::v1::metric::Data;
use survey_collector::{Limits, Tokens};
use survey_schema as schema;
use survey_test_support::collector::*;
use survey_test_support::otlp::*;
use survey_test_support::*;

const LAUNCH: &str = schema::LAUNCH_TOTAL;

/// A child node's entry point, not a test: the tests that need a node
/// start this binary with `--include-ignored --exact node_child`.
#[test]
#[ignore = "a child node's entry point, started by the tests that need one"]
fn node_child() {
    node::run_child();
}

fn one_launch(node: u32, model: &str) -> ExportMetricsServiceRequest {
    request(
        &Node::new(node),
        vec![cumulative(
            LAUNCH,
            model_attrs(model),
            at(DAY, 1),
            at(DAY, 2),
            1,
        )],
    )
}

/// `google.rpc.Status`, the body of OTLP/HTTP error answers.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    message: String,
}

fn rpc_status(answer: &Answer) -> RpcStatus {
    RpcStatus::decode(answer.body.as_slice()).expect("a google.rpc.Status body")
}

#[tokio::test]
async fn statuses_follow_the_otlp_http_specification() {
    let dir = TestDir::new("statuses");
    let server = collector(&dir).await;
    let url = format!("{}/v1/metrics", server.endpoint());
    let post = reqwest::Method::POST;
    let proto = ("content-type", "application/x-protobuf");
    let body = one_launch(1, "a").encode_to_vec();

    // 200: protobuf, gzip or not; JSON.
    let ok = send(post.clone(), &url, &[proto], body.clone()).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(ok.response().partial_success, None);
    let ok = send(
        post.clone(),
        &url,
        &[proto, ("content-encoding", "gzip")],
        gzip(&body),
    )
    .await;
    assert_eq!(ok.status, 200);
    let json_body = serde_json::to_vec(&one_launch(2, "b")).unwrap();
    let ok = send(
        post.clone(),
        &url,
        &[("content-type", "application/json")],
        json_body,
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ok.body).unwrap(),
        json!({})
    );

    // 400: not a request in the announced encoding; bad gzip.
    for (headers, body) in [
        (vec![proto], b"\xff\xff\xff\xff".to_vec()),
        (
            vec![("content-type", "application/json")],
            b"{\"resourceMetrics\": 7}".to_vec(),
        ),
        (
            vec![proto, ("content-encoding", "gzip")],
            b"not gzip".to_vec(),
        ),
    ] {
        let answer = send(post.clone(), &url, &headers, body).await;
        assert_eq!(answer.status, 400, "{headers:?}");
    }
    let bad = send(post.clone(), &url, &[proto], b"\xff\xff".to_vec()).await;
    let status = rpc_status(&bad);
    assert_eq!(status.code, 3);
    assert!(
        status
            .message
            .contains("not an OTLP ExportMetricsServiceRequest"),
        "{status:?}"
    );
    let bad_json = send(
        post.clone(),
        &url,
        &[("content-type", "application/json")],
        b"[".to_vec(),
    )
    .await;
    assert_eq!(bad_json.status, 400);
    let status: serde_json::Value = serde_json::from_slice(&bad_json.body).unwrap();
    assert_eq!(status["code"], 3);

    // 415: unsupported content type or encoding.
    for headers in [
        vec![("content-type", "text/plain")],
        vec![("content-type", "application/grpc")],
        vec![proto, ("content-encoding", "br")],
    ] {
        let answer = send(post.clone(), &url, &headers, body.clone()).await;
        assert_eq!(answer.status, 415, "{headers:?}");
    }
    let no_type = send(post.clone(), &url, &[], body.clone()).await;
    assert_eq!(no_type.status, 415);

    // 405: other methods on /v1/metrics; 404: other paths.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let answer = send(method.clone(), &url, &[proto], Vec::new()).await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow"), Some("POST"));
    }
    for path in ["/v1/traces", "/v1/logs", "/", "/v1/metrics/x"] {
        let answer = send(
            post.clone(),
            &format!("{}{path}", server.endpoint()),
            &[proto],
            body.clone(),
        )
        .await;
        assert_eq!(answer.status, 404, "{path}");
    }

    // 413: a body over 4 MiB, announced or not; a gzip bomb.
    let (status, _) = raw_status(
        server.local_addr(),
        "POST /v1/metrics HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
         content-length: 4194305",
        b"",
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = raw_status(
        server.local_addr(),
        "POST /v1/metrics HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
         transfer-encoding: chunked",
        format!("{:x}\r\n{}\r\n0\r\n\r\n", 5 << 20, "\0".repeat(5 << 20)).as_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    let bomb = gzip(&vec![0u8; 17 << 20]);
    assert!(bomb.len() < 1 << 20);
    let answer = send(
        post.clone(),
        &url,
        &[proto, ("content-encoding", "gzip")],
        bomb,
    )
    .await;
    assert_eq!(answer.status, 413);
    assert_eq!(rpc_status(&answer).code, 8);

    // Only the accepted exports were stored: "a" and "b", once each.
    let report = report(&dir, Default::default());
    assert_eq!(
        report["most_launched"],
        json!([{"model": "a", "launches": 1, "nodes": 1}, {"model": "b", "launches": 1, "nodes": 1}])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn partial_success_counts_the_rejected_points_and_says_why() {
    let dir = TestDir::new("partial");
    let server = collector(&dir).await;
    let mut bad_key = model_attrs("c");
    bad_key.push(kv_str("host.name", "CANARY-HOST"));
    let mut bad_value = model_attrs("d");
    bad_value[0] = kv_str("mesh_llm.model", "/home/CANARY-USER/d.gguf");
    let mut with_resource = request(
        &Node::new(1),
        vec![
            cumulative(LAUNCH, model_attrs("a"), at(DAY, 1), at(DAY, 2), 1),
            cumulative(LAUNCH, bad_key, at(DAY, 1), at(DAY, 2), 1),
            cumulative(LAUNCH, bad_value, at(DAY, 1), at(DAY, 2), 1),
            cumulative(
                "http_requests_total",
                model_attrs("e"),
                at(DAY, 1),
                at(DAY, 2),
                1,
            ),
        ],
    );
    // A second resource with a key survey never sends: all its points go.
    let mut other = request(
        &Node::new(2),
        vec![
            cumulative(LAUNCH, model_attrs("f"), at(DAY, 1), at(DAY, 2), 1),
            gauge(
                schema::MODEL_CONTEXT_LENGTH,
                model_attrs("f"),
                at(DAY, 2),
                4096,
            ),
        ],
    );
    other.resource_metrics[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv_str("host.name", "CANARY-HOST"));
    with_resource
        .resource_metrics
        .extend(other.resource_metrics);
    let answer = export(&server, &with_resource).await;
    assert_eq!(answer.status, 200);
    let partial = answer.response().partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 5);
    assert_eq!(
        partial.error_message,
        "5 data points rejected: 1 not a survey metric; 2 resource attribute not allowed; \
         1 attribute key not allowed on the metric, repeated or missing; \
         1 attribute value not allowed"
    );
    assert!(!partial.error_message.contains("CANARY"));
    let report = report(&dir, Default::default());
    assert_eq!(
        report["most_launched"],
        json!([{"model": "a", "launches": 1, "nodes": 1}])
    );
    // Nothing of the rejected points is on disk.
    server.shutdown().await;
    let bytes = dir.all_bytes();
    for canary in ["CANARY", "host.name", "http_requests_total"] {
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{canary} found in the database files"
        );
    }
}

#[tokio::test]
async fn tokens_are_required_when_configured() {
    let dir = TestDir::new("tokens");
    let mut tokens = Tokens::default();
    tokens.add("first-token", "--token").unwrap();
    tokens
        .add_list("second,third", "SURVEY_COLLECTOR_TOKENS")
        .unwrap();
    let server = collector_with(&dir, tokens, Limits::default()).await;
    let url = format!("{}/v1/metrics", server.endpoint());
    let body = one_launch(1, "a").encode_to_vec();
    let proto = ("content-type", "application/x-protobuf");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic Zmlyc3QtdG9rZW4="),
        Some("first-token"),
    ] {
        let mut headers = vec![proto];
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        let answer = send(reqwest::Method::POST, &url, &headers, body.clone()).await;
        assert_eq!(answer.status, 401, "{auth:?}");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        assert_eq!(rpc_status(&answer).code, 16);
    }
    for token in ["first-token", "second", "third"] {
        let auth = format!("Bearer {token}");
        let answer = send(
            reqwest::Method::POST,
            &url,
            &[proto, ("authorization", &auth)],
            body.clone(),
        )
        .await;
        assert_eq!(answer.status, 200, "{token}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn points_past_ten_thousand_are_rejected_through_partial_success() {
    let dir = TestDir::new("limit");
    let server = collector(&dir).await;
    let mut big = one_launch(1, "m0");
    let Some(Data::Sum(sum)) = &mut big.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        unreachable!()
    };
    let template = sum.data_points[0].clone();
    for i in 1..10_005 {
        let mut point = template.clone();
        point.attributes[0] = kv_str("mesh_llm.model", &format!("m{i}"));
        sum.data_points.push(point);
    }
    let body = big.encode_to_vec();
    assert!(body.len() > 4 << 20, "over the limit unless compressed");
    let answer = send(
        reqwest::Method::POST,
        &format!("{}/v1/metrics", server.endpoint()),
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        gzip(&body),
    )
    .await;
    assert_eq!(answer.status, 200);
    let partial = answer.response().partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 5);
    assert!(
        partial.error_message.contains("over the limit of 10000"),
        "{partial:?}"
    );
    let report = report(&dir, Default::default());
    let launched = rows(&report, "most_launched");
    assert_eq!(launched.len(), 10_000);
    assert!(launched.iter().all(|r| r["launches"] == 1));
    assert!(!launched.iter().any(|r| r["model"] == "m10000"));
    server.shutdown().await;
}

#[tokio::test]
async fn the_real_exporter_in_json_without_gzip_is_understood() {
    let dir = TestDir::new("json");
    let server = collector(&dir).await;
    let child = node::spawn_with(
        "node_child",
        "cpu",
        &server.endpoint(),
        "protocol = \"http/json\"\ncompression = \"none\"",
    );
    node::finished(child, "the node").await;
    let report = report(&dir, Default::default());
    assert_eq!(report["most_launched"], node::cpu_most_launched());
    assert_eq!(
        row(
            &report,
            "viable_context",
            &[("model", json!("Qwen3-8B-Q4_K_M"))]
        )["max_context"],
        json!(8192)
    );
    server.shutdown().await;
}
