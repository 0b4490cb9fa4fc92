//! The opt-in inference metrics (`[telemetry] prompt_shape_metrics`), from
//! real nodes serving through the stand-in, as a real OTLP receiver
//! decodes them: nothing with the switch off; with it on, one count per
//! forwarded request by outcome, and the histograms of the answers in full
//! in the buckets the stand-in's timings imply; no prompt, answer or
//! unserved model name in the log or the export.

use std::net::SocketAddr;
use std::time::Duration;

use llama_server_standin::{self as standin, Timings};
use survey::schema;
use survey_test_support::mesh::*;
use survey_test_support::*;

const WAIT: Duration = Duration::from_secs(30);

/// The inference metrics among `points`.
fn inference_points(points: &[Point]) -> Vec<&Point> {
    points
        .iter()
        .filter(|p| p.metric.starts_with("mesh_llm_inference_"))
        .collect()
}

/// The bucket of `metric` that holds `value` (OpenTelemetry's rule: a
/// bucket holds values up to its bound, inclusive).
fn bucket(metric: &str, value: f64) -> usize {
    let bounds = schema::metric(metric).unwrap().boundaries;
    bounds.iter().take_while(|b| value > **b).count()
}

/// What the switch-on tests expect of the histograms: per metric, the
/// bucket counts.
#[derive(Default)]
struct Expected {
    counts: std::collections::BTreeMap<&'static str, Vec<u64>>,
}

impl Expected {
    fn add(&mut self, metric: &'static str, value: f64) {
        let bounds = schema::metric(metric).unwrap().boundaries;
        let counts = self
            .counts
            .entry(metric)
            .or_insert_with(|| vec![0; bounds.len() + 1]);
        counts[bucket(metric, value)] += 1;
    }

    /// A request answered in full by a stand-in with `token_ms`: its body
    /// of `bytes` bytes, `output` tokens.
    fn answered(&mut self, bytes: usize, output: u64, token_ms: u64) {
        let prompt = standin::prompt_tokens(bytes);
        let timings = Timings::new(prompt, output, token_ms);
        self.add(schema::INFERENCE_PROMPT_TOKENS, prompt as f64);
        self.add(schema::INFERENCE_OUTPUT_TOKENS, output as f64);
        self.add(
            schema::INFERENCE_PREFILL_TOKENS_PER_S,
            timings.prompt_n as f64 * 1000.0 / timings.prompt_ms,
        );
        // llama-server's clock times the steps after the first token.
        self.add(
            schema::INFERENCE_DECODE_TOKENS_PER_S,
            (timings.predicted_n - 1) as f64 * 1000.0 / timings.predicted_ms,
        );
    }
}

/// A node serving the models written from `models` (name, file), survey
/// exporting to `receiver` with `telemetry_extra`.
fn node_with(
    dir: &TestDir,
    receiver: &Receiver,
    models: &[(&str, ModelFile)],
    telemetry_extra: &str,
    options: NodeOptions,
) -> Node {
    let mut config = String::new();
    for (name, file) in models {
        let model = write_model(dir, &format!("m/{name}.gguf"), file.clone());
        config.push_str(&format!("[[models]]\nmodel = \"{}\"\n\n", model.display()));
    }
    config.push_str(&telemetry_for(receiver, telemetry_extra));
    let node = Node::start(dir, &config, options);
    node.wait_started();
    node
}

/// `mesh-llm survey show --json` once there is an export.
fn show(node: &Node) -> mesh_llm::api::SurveyExport {
    wait_until("an export to show", WAIT, || {
        let out = node.cli(&["survey", "show", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    })
}

/// `mesh-llm survey show`, the table.
fn show_table(node: &Node) -> String {
    let out = node.cli(&["survey", "show"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A chat request body for `model`: `max_tokens` words, streamed or not,
/// with `stream_options.include_usage` when `usage`.
fn chat(model: &str, max_tokens: u64, stream: bool, usage: bool) -> String {
    let options = if usage {
        r#","stream_options":{"include_usage":true}"#
    } else {
        ""
    };
    format!(
        r#"{{"model":"{model}","stream":{stream}{options},"max_tokens":{max_tokens},"messages":[{{"role":"user","content":"How fast are you?"}}]}}"#
    )
}

/// A completion request body.
fn completion(model: &str, max_tokens: u64, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"max_tokens":{max_tokens},"prompt":"Once upon a time"}}"#
    )
}

/// POSTs and checks the answer came in full.
fn answered_in_full(http: SocketAddr, path: &str, body: &str) {
    let (status, content_type, answer) = post(http, path, body);
    assert_eq!(status, 200, "{answer}");
    if content_type == "text/event-stream" {
        assert_eq!(
            sse_events(&answer).last().map(String::as_str),
            Some("[DONE]")
        );
    } else {
        serde_json::from_str::<serde_json::Value>(&answer).unwrap();
    }
}

#[test]
fn with_the_switch_off_no_inference_metric_is_exported_and_survey_show_says_so() {
    let dir = TestDir::new("inference-off");
    let receiver = Receiver::start();
    let node = node_with(
        &dir,
        &receiver,
        &[("quiet", ModelFile::default())],
        // Several exports after the requests are waited for: each is sent.
        "heartbeat_secs = 0",
        NodeOptions::default(),
    );
    answered_in_full(
        node.http,
        "/v1/chat/completions",
        &chat("quiet", 4, false, false),
    );
    answered_in_full(
        node.http,
        "/v1/chat/completions",
        &chat("quiet", 4, true, true),
    );
    answered_in_full(node.http, "/v1/completions", &completion("quiet", 4, false));
    answered_in_full(node.http, "/v1/completions", &completion("quiet", 4, true));
    // Several exports after the requests.
    let before = receiver.requests().len();
    assert!(receiver.wait_until(WAIT, |requests| requests.len() >= before + 3));
    for request in receiver.requests() {
        let points = request.points();
        assert!(inference_points(&points).is_empty(), "{points:#?}");
    }
    assert!(!show(&node).prompt_shape_metrics);
    let table = show_table(&node);
    assert!(
        table.contains("inference metrics (telemetry.prompt_shape_metrics): off"),
        "{table}"
    );
    assert!(!node.status().survey.contains("inference metrics on"));
}

#[test]
fn with_the_switch_on_every_answer_counts_and_lands_in_the_buckets_its_timings_imply() {
    // 3 ms a token: decoding at 333 tokens/s, prompts at 6,667: both well
    // inside a bucket.
    const TOKEN_MS: u64 = 3;
    let dir = TestDir::new("inference-on");
    let receiver = Receiver::start();
    let node = node_with(
        &dir,
        &receiver,
        &[(
            "Qwen3-8B-Q4_K_M",
            ModelFile {
                architecture: Some("qwen3"),
                file_type: Some(15),
                token_ms: Some(TOKEN_MS as u32),
                ..ModelFile::default()
            },
        )],
        "prompt_shape_metrics = true",
        NodeOptions::default(),
    );
    let model = "Qwen3-8B-Q4_K_M";
    let chat_path = "/v1/chat/completions";
    let text_path = "/v1/completions";
    let long_prompt = format!(
        r#"{{"model":"{model}","max_tokens":40,"prompt":"{}"}}"#,
        "word ".repeat(1000)
    );
    // (path, body, output tokens, streamed)
    let requests: Vec<(&str, String, u64, bool)> = vec![
        // Whole answers.
        (chat_path, chat(model, 5, false, false), 5, false),
        (chat_path, chat(model, 40, false, false), 40, false),
        (text_path, completion(model, 16, false), 16, false),
        (text_path, long_prompt, 40, false),
        // Streamed: a chat without and with include_usage (without it
        // no usage at all: the counts come from the timings), completions.
        (chat_path, chat(model, 3, true, false), 3, true),
        (chat_path, chat(model, 20, true, false), 20, true),
        (chat_path, chat(model, 3, true, true), 3, true),
        (chat_path, chat(model, 70, true, true), 70, true),
        (text_path, completion(model, 8, true), 8, true),
        (text_path, completion(model, 17, true), 17, true),
    ];
    let mut expected = Expected::default();
    let mut streamed = 0;
    for (path, body, output, stream) in &requests {
        answered_in_full(node.http, path, body);
        expected.answered(body.len(), *output, TOKEN_MS);
        streamed += u64::from(*stream);
    }
    let n = requests.len() as f64;
    let points = receiver.wait_for_export(WAIT, |points| {
        total(points, schema::INFERENCE_REQUESTS_TOTAL) == n
            && total(points, schema::INFERENCE_TIME_TO_FIRST_TOKEN_MS) == streamed as f64
            && total(points, schema::INFERENCE_DECODE_TOKENS_PER_S) == n
    });

    // The attributes are the launch's, without its kind.
    let launch = one(&points, schema::LAUNCH_SUCCESS_TOTAL, &[]);
    let mut attributes = launch.attributes.clone();
    attributes.remove("mesh_llm.launch_kind");
    assert_eq!(attributes["mesh_llm.model"], model);
    assert_eq!(attributes["mesh_llm.architecture"], "qwen3");
    let ok = one(
        &points,
        schema::INFERENCE_REQUESTS_TOTAL,
        &[("mesh_llm.request_outcome", "ok")],
    );
    assert_eq!(ok.value, n);
    let mut with_outcome = attributes.clone();
    with_outcome.insert("mesh_llm.request_outcome".into(), "ok".into());
    assert_eq!(ok.attributes, with_outcome);
    assert_eq!(of(&points, schema::INFERENCE_REQUESTS_TOTAL).len(), 1);

    for (metric, counts) in &expected.counts {
        let p = one(&points, metric, &[]);
        assert_eq!(p.attributes, attributes, "{metric}");
        assert_eq!(p.value, n, "{metric}");
        assert_eq!(&p.bucket_counts, counts, "{metric}");
    }
    // Every speed in the bucket of 1,000 / 3 and 20,000 / 3 tokens/s.
    let decode = one(&points, schema::INFERENCE_DECODE_TOKENS_PER_S, &[]);
    assert_eq!(
        decode.bucket_counts[bucket(schema::INFERENCE_DECODE_TOKENS_PER_S, 1000.0 / 3.0)],
        requests.len() as u64
    );
    let prefill = one(&points, schema::INFERENCE_PREFILL_TOKENS_PER_S, &[]);
    assert_eq!(
        prefill.bucket_counts[bucket(schema::INFERENCE_PREFILL_TOKENS_PER_S, 20_000.0 / 3.0)],
        requests.len() as u64
    );
    // The time to first token: streamed answers only, at least the
    // stand-in's pause before its first word.
    let ttft = one(&points, schema::INFERENCE_TIME_TO_FIRST_TOKEN_MS, &[]);
    assert_eq!(ttft.value, streamed as f64);
    assert_eq!(ttft.attributes, attributes);
    assert!(
        ttft.sum.unwrap() >= (streamed * TOKEN_MS) as f64,
        "{ttft:?}"
    );
    assert_eq!(inference_points(&points).len(), 6);

    assert!(show(&node).prompt_shape_metrics);
    let table = show_table(&node);
    assert!(
        table.contains("inference metrics (telemetry.prompt_shape_metrics): on"),
        "{table}"
    );
    assert!(node.status().survey.contains("inference metrics on"));
}

#[test]
fn each_outcome_is_counted_and_only_answers_in_full_reach_the_histograms() {
    let dir = TestDir::new("inference-outcomes");
    let receiver = Receiver::start();
    let mode = |mode| ModelFile {
        mode: Some(mode),
        ..ModelFile::default()
    };
    let talking = ModelFile {
        token_ms: Some(100),
        ..ModelFile::default()
    };
    let node = node_with(
        &dir,
        &receiver,
        &[
            ("steady", talking.clone()),
            ("failing", mode("completions-fail:500")),
            ("breaking", mode("break-after:3")),
            (
                "silent",
                ModelFile {
                    token_ms: Some(5_000),
                    ..ModelFile::default()
                },
            ),
            ("talker", talking),
        ],
        "prompt_shape_metrics = true",
        NodeOptions {
            extra_args: &[
                "--inference-timeout-secs",
                "1",
                "--unload-grace-secs",
                "1",
                "--shutdown-timeout-secs",
                "10",
            ],
            ..NodeOptions::default()
        },
    );
    // A stream to another model runs through all of it: 8 s of words.
    let (steady_began, steady) =
        stream_in_background(node.http, chat("steady", 80, true, true), false);
    steady_began
        .recv_timeout(WAIT)
        .expect("the steady stream began");

    // backend_error: an error status, whole and streamed, passed through.
    for stream in [false, true] {
        let (status, _, body) = post(
            node.http,
            "/v1/chat/completions",
            &chat("failing", 4, stream, false),
        );
        assert_eq!(status, 500, "{body}");
    }
    // backend_error: broken off mid-answer, streamed and whole.
    let (began, breaking) =
        stream_in_background(node.http, chat("breaking", 10, true, true), false);
    began.recv_timeout(WAIT).expect("the breaking stream began");
    let (body, clean) = breaking.join().unwrap();
    assert!(!clean && !body.contains("[DONE]"), "{body}");
    let whole = http_client()
        .post(format!("http://{}/v1/completions", node.http))
        .body(completion("breaking", 10, false))
        .send()
        .unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    assert!(whole.text().is_err(), "a broken answer read whole");
    // timeout: silent past --inference-timeout-secs, before the answer
    // and within it.
    let (status, _, _) = post(
        node.http,
        "/v1/completions",
        &completion("silent", 2, false),
    );
    assert_eq!(status, 504);
    let (_, cut) = stream_in_background(node.http, chat("silent", 3, true, true), false);
    let (body, clean) = cut.join().unwrap();
    assert!(!clean && !body.contains("[DONE]"), "{body}");
    // client_cancelled: the client hangs up mid-stream.
    let (began, hung_up) = stream_in_background(node.http, chat("talker", 300, true, true), true);
    began.recv_timeout(WAIT).expect("the talker began");
    hung_up.join().unwrap();
    assert!(
        !steady.is_finished(),
        "the steady stream ran through every outcome above"
    );

    // The concurrent stream ended in full.
    let (body, clean) = steady.join().unwrap();
    assert!(clean, "{body}");
    let events = sse_events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    receiver.wait_for_export(WAIT, |points| {
        total(points, schema::INFERENCE_REQUESTS_TOTAL) == 8.0
    });

    // shutdown: a stream in flight is cut when the grace runs out.
    let (began, last) = stream_in_background(node.http, chat("talker", 300, true, true), false);
    began.recv_timeout(WAIT).expect("the last stream began");
    node.stop();
    let (body, _) = last.join().unwrap();
    assert!(!body.contains("[DONE]"));

    // The final export: one count per request, by model and outcome.
    let points = receiver.latest_points();
    let count = |model: &str, outcome: &str| {
        of(&points, schema::INFERENCE_REQUESTS_TOTAL)
            .iter()
            .filter(|p| {
                p.attr("mesh_llm.model") == Some(model)
                    && p.attr("mesh_llm.request_outcome") == Some(outcome)
            })
            .map(|p| p.value)
            .sum::<f64>()
    };
    assert_eq!(count("steady", "ok"), 1.0, "{points:#?}");
    assert_eq!(count("failing", "backend_error"), 2.0);
    assert_eq!(count("breaking", "backend_error"), 2.0);
    assert_eq!(count("silent", "timeout"), 2.0);
    assert_eq!(count("talker", "client_cancelled"), 1.0);
    assert_eq!(count("talker", "shutdown"), 1.0);
    assert_eq!(total(&points, schema::INFERENCE_REQUESTS_TOTAL), 9.0);
    // Only the answer in full is in the histograms.
    for p in inference_points(&points) {
        if p.metric != schema::INFERENCE_REQUESTS_TOTAL {
            assert_eq!(p.attr("mesh_llm.model"), Some("steady"), "{p:?}");
            assert_eq!(p.value, 1.0, "{p:?}");
        }
    }
    assert_eq!(
        of(&points, schema::INFERENCE_TIME_TO_FIRST_TOKEN_MS).len(),
        1
    );
}

#[test]
fn prompts_answers_and_unserved_model_names_reach_neither_the_log_nor_the_export() {
    const CANARY: &str = "INFERENCECANARY5b1e";
    let dir = TestDir::new("inference-canary");
    let receiver = Receiver::start();
    let node = node_with(
        &dir,
        &receiver,
        &[(
            "echoer",
            ModelFile {
                mode: Some("echo"),
                ..ModelFile::default()
            },
        )],
        "prompt_shape_metrics = true\ncompression = \"none\"",
        NodeOptions {
            env: &[("RUST_LOG", "trace")],
            ..NodeOptions::default()
        },
    );
    let chat_body = |stream: bool| {
        format!(
            r#"{{"model":"echoer","stream":{stream},"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"{CANARY} said"}}]}}"#
        )
    };
    let text_body = |stream: bool| {
        format!(r#"{{"model":"echoer","stream":{stream},"prompt":"{CANARY} wrote"}}"#)
    };
    for (path, body) in [
        ("/v1/chat/completions", chat_body(false)),
        ("/v1/chat/completions", chat_body(true)),
        ("/v1/completions", text_body(false)),
        ("/v1/completions", text_body(true)),
    ] {
        let (status, _, answer) = post(node.http, path, &body);
        assert_eq!(status, 200, "{answer}");
        // The echo: the canary is in the answer.
        assert!(answer.contains(CANARY), "{answer}");
    }
    // Model names that are not served, canary in them: refused, not
    // forwarded, not recorded.
    for model in [CANARY.to_string(), format!("{CANARY}/../x.gguf")] {
        let (status, _, _) = post(
            node.http,
            "/v1/chat/completions",
            &format!(r#"{{"model":"{model}","stream":true,"messages":[]}}"#),
        );
        assert_eq!(status, 404);
    }
    receiver.wait_for_export(WAIT, |points| {
        total(points, schema::INFERENCE_REQUESTS_TOTAL) == 4.0
            && total(points, schema::INFERENCE_OUTPUT_TOKENS) == 4.0
    });
    let (_, _, log) = node.terminate();
    assert!(log.contains("proxied"), "the trace log shows the requests");
    assert!(!log.contains(CANARY), "canary in the node's log: {log}");
    let exports = receiver.requests();
    assert!(!exports.is_empty());
    for export in &exports {
        assert!(export.decoded.is_some());
        // Uncompressed: the raw bytes are the bytes searched.
        assert_eq!(export.header("content-encoding"), None);
        let raw = String::from_utf8_lossy(&export.raw_body);
        assert!(!raw.contains(CANARY), "canary exported");
        assert!(!raw.contains("said") && !raw.contains("wrote"));
    }
    let last = receiver.latest_points();
    assert_eq!(total(&last, schema::INFERENCE_REQUESTS_TOTAL), 4.0);
    assert!(
        of(&last, schema::INFERENCE_REQUESTS_TOTAL)
            .iter()
            .all(|p| p.attr("mesh_llm.model") == Some("echoer"))
    );
}
