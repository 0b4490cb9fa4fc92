//! Validation at ingest, one case per rule: a valid point passes, and each
//! mutation of it is rejected whole, for the named reason.

use survey_collector::__private::{Clock, Dimension, Rejection, validate};
use survey_collector::MetricKeys;
use survey_collector::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use survey_collector::otlp::common::v1::KeyValue;
use survey_collector::otlp::metrics::v1::exemplar::Value as ExemplarValue;
use survey_collector::otlp::metrics::v1::number_data_point::Value as NumberValue;
use survey_collector::otlp::metrics::v1::{Exemplar, Metric, metric::Data};
use survey_schema::{self as schema, AttributeKey};
use survey_test_support::otlp::*;

const NOW: Clock = Clock {
    now: (DAY + 1) * 86_400 * 1_000_000_000,
    retention: 48 * 3600 * 1_000_000_000,
};

fn counter_request() -> ExportMetricsServiceRequest {
    request(
        &Node::new(1),
        vec![cumulative(
            schema::LAUNCH_TOTAL,
            model_attrs("Qwen3-8B"),
            at(DAY, 1),
            at(DAY, 2),
            1,
        )],
    )
}

fn histogram_request() -> ExportMetricsServiceRequest {
    request(
        &Node::new(1),
        vec![histogram(
            schema::UPTIME_S,
            model_attrs("Qwen3-8B"),
            at(DAY, 1),
            at(DAY, 2),
            &[20.0],
        )],
    )
}

/// What a node with `prompt_shape_metrics = true` sends for its requests.
fn inference_counter_request() -> ExportMetricsServiceRequest {
    request(
        &Node::new(1),
        vec![cumulative(
            schema::INFERENCE_REQUESTS_TOTAL,
            outcome_attrs("Qwen3-8B", "ok"),
            at(DAY, 1),
            at(DAY, 2),
            3,
        )],
    )
}

/// ... and for the speeds of its answers.
fn inference_histogram_request() -> ExportMetricsServiceRequest {
    request(
        &Node::new(1),
        vec![histogram(
            schema::INFERENCE_DECODE_TOKENS_PER_S,
            inference_attrs("Qwen3-8B"),
            at(DAY, 1),
            at(DAY, 2),
            &[40.0, 60.0],
        )],
    )
}

/// What survey sends of the node's hardware and version alone.
fn node_attrs() -> Vec<KeyValue> {
    let node_keys = [
        "mesh_llm.gpu_name",
        "mesh_llm.gpu_stable_id",
        "mesh_llm.backend_device",
        "mesh_llm.gpu_count",
        "mesh_llm.is_soc",
        "mesh_llm.service_version",
    ];
    let mut attrs = model_attrs("Qwen3-8B");
    attrs.retain(|kv| node_keys.contains(&kv.key.as_str()));
    attrs
}

fn loaded_models_request() -> ExportMetricsServiceRequest {
    request(
        &Node::new(1),
        vec![gauge(schema::LOADED_MODELS, node_attrs(), at(DAY, 2), 1)],
    )
}

fn metric(r: &mut ExportMetricsServiceRequest) -> &mut Metric {
    &mut r.resource_metrics[0].scope_metrics[0].metrics[0]
}

fn attrs(r: &mut ExportMetricsServiceRequest) -> &mut Vec<KeyValue> {
    match &mut metric(r).data {
        Some(Data::Sum(s)) => &mut s.data_points[0].attributes,
        Some(Data::Histogram(h)) => &mut h.data_points[0].attributes,
        Some(Data::Gauge(g)) => &mut g.data_points[0].attributes,
        _ => unreachable!(),
    }
}

fn remove_attr(r: &mut ExportMetricsServiceRequest, key: &str) {
    attrs(r).retain(|a| a.key != key);
}

fn set_attr(r: &mut ExportMetricsServiceRequest, kv: KeyValue) {
    let attrs = attrs(r);
    attrs.retain(|a| a.key != kv.key);
    attrs.push(kv);
}

fn resource_attrs(r: &mut ExportMetricsServiceRequest) -> &mut Vec<KeyValue> {
    &mut r.resource_metrics[0].resource.as_mut().unwrap().attributes
}

fn number(
    r: &mut ExportMetricsServiceRequest,
) -> &mut survey_collector::otlp::metrics::v1::NumberDataPoint {
    match &mut metric(r).data {
        Some(Data::Sum(s)) => &mut s.data_points[0],
        _ => unreachable!(),
    }
}

fn hist(
    r: &mut ExportMetricsServiceRequest,
) -> &mut survey_collector::otlp::metrics::v1::HistogramDataPoint {
    match &mut metric(r).data {
        Some(Data::Histogram(h)) => &mut h.data_points[0],
        _ => unreachable!(),
    }
}

type Mutation = fn(&mut ExportMetricsServiceRequest);
type Base = fn() -> ExportMetricsServiceRequest;

#[test]
fn valid_points_pass_and_keep_their_typed_attributes() {
    for request in [counter_request(), histogram_request()] {
        let validated = validate(&request, NOW);
        assert_eq!(validated.rejected.total(), 0, "{:?}", validated.rejected);
        assert_eq!(validated.points.len(), 1);
        let point = &validated.points[0];
        assert_eq!(point.attributes.dimensions.len(), 12);
        // Canonical JSON: sorted keys, values as text.
        assert!(
            point.attributes.json.starts_with(
                "{\"mesh_llm.architecture\":\"qwen3\",\"mesh_llm.backend\":\"llama.cpp\","
            ),
            "{}",
            point.attributes.json
        );
        assert!(
            point
                .attributes
                .json
                .contains("\"mesh_llm.gpu_count\":\"1\"")
        );
        assert!(
            point
                .attributes
                .json
                .contains("\"mesh_llm.is_soc\":\"false\"")
        );
        assert_eq!(validated.resources.len(), 1);
        assert_eq!(
            validated.resources[0].node,
            "00000000-0000-4000-8000-000000000001"
        );
    }
    // Attribute order does not change the stream.
    let mut shuffled = counter_request();
    attrs(&mut shuffled).reverse();
    assert_eq!(
        validate(&shuffled, NOW).points[0].attributes.json,
        validate(&counter_request(), NOW).points[0].attributes.json
    );
}

#[test]
fn each_rule_rejects_the_whole_point() {
    let cases: Vec<(&str, Rejection, Base, Mutation)> = vec![
        (
            "unknown metric",
            Rejection::UnknownMetric,
            counter_request,
            |r| metric(r).name = "mesh_llm_model_other".into(),
        ),
        ("wrong unit", Rejection::WrongShape, counter_request, |r| {
            metric(r).unit = "1".into()
        }),
        (
            "counter as gauge",
            Rejection::WrongShape,
            counter_request,
            |r| {
                let Some(Data::Sum(sum)) = metric(r).data.take() else {
                    unreachable!()
                };
                metric(r).data = Some(Data::Gauge(survey_collector::otlp::metrics::v1::Gauge {
                    data_points: sum.data_points,
                }));
            },
        ),
        (
            "not monotonic",
            Rejection::WrongShape,
            counter_request,
            |r| {
                if let Some(Data::Sum(s)) = &mut metric(r).data {
                    s.is_monotonic = false
                }
            },
        ),
        (
            "no temporality",
            Rejection::WrongShape,
            counter_request,
            |r| {
                if let Some(Data::Sum(s)) = &mut metric(r).data {
                    s.aggregation_temporality = 0
                }
            },
        ),
        (
            "other bounds",
            Rejection::WrongShape,
            histogram_request,
            |r| hist(r).explicit_bounds[0] = 11.0,
        ),
        ("bucket count", Rejection::Value, histogram_request, |r| {
            hist(r).bucket_counts.push(0)
        }),
        (
            "buckets disagree with count",
            Rejection::Value,
            histogram_request,
            |r| hist(r).count = 2,
        ),
        ("negative sum", Rejection::Value, histogram_request, |r| {
            hist(r).sum = Some(-1.0)
        }),
        ("NaN sum", Rejection::Value, histogram_request, |r| {
            hist(r).sum = Some(f64::NAN)
        }),
        ("metadata", Rejection::Extra, counter_request, |r| {
            metric(r).metadata.push(kv_str("a", "b"))
        }),
        (
            "attribute outside the allowlist",
            Rejection::AttributeKey,
            counter_request,
            |r| attrs(r).push(kv_str("http.url", "x")),
        ),
        (
            "attribute twice",
            Rejection::AttributeKey,
            counter_request,
            |r| attrs(r).push(kv_str("mesh_llm.model", "b")),
        ),
        (
            "model as a path",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.model", "/home/alice/m.gguf")),
        ),
        (
            "model with extension",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.model", "m.gguf")),
        ),
        (
            "model as a URL",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.model", "https://x.example/m")),
        ),
        (
            "model as a URL without a path",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.model", "https://user:pw@host.example")),
        ),
        (
            "architecture not lowercased",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.architecture", "Qwen3")),
        ),
        (
            "gpu name with two spaces",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.gpu_name", "RTX  4090")),
        ),
        (
            "raw GPU UUID",
            Rejection::AttributeValue,
            counter_request,
            |r| {
                set_attr(
                    r,
                    kv_str("mesh_llm.gpu_stable_id", "GPU-6f1c2d3e-4b5a-6978"),
                )
            },
        ),
        (
            "stable id in capitals",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.gpu_stable_id", "6F1C2D3E4B5A6978")),
        ),
        (
            "negative gpu count",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_int("mesh_llm.gpu_count", -1)),
        ),
        (
            "gpu count as text",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.gpu_count", "1")),
        ),
        (
            "is_soc as text",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.is_soc", "false")),
        ),
        (
            "unknown launch kind",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.launch_kind", "manual")),
        ),
        (
            "unknown bucket",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.context_bucket", "4k")),
        ),
        (
            "unknown reason",
            Rejection::AttributeValue,
            counter_request,
            |r| {
                set_attr(
                    r,
                    kv_str("mesh_llm.failure_reason", "oom: killed by pid 4242"),
                )
            },
        ),
        (
            "version with a space",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.service_version", "1.0 beta")),
        ),
        (
            "version holding a path",
            Rejection::AttributeValue,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.service_version", "1.0/home/alice")),
        ),
        (
            "attribute without value",
            Rejection::AttributeValue,
            counter_request,
            |r| {
                attrs(r).push(KeyValue {
                    key: "mesh_llm.failure_reason".into(),
                    ..Default::default()
                })
            },
        ),
        (
            "resource key not survey's",
            Rejection::Resource,
            counter_request,
            |r| resource_attrs(r).push(kv_str("host.name", "alice-laptop")),
        ),
        (
            "instance id not a UUID",
            Rejection::Resource,
            counter_request,
            |r| {
                resource_attrs(r).retain(|a| a.key != "service.instance.id");
                resource_attrs(r).push(kv_str("service.instance.id", "alice-laptop"));
            },
        ),
        (
            "service name with a path",
            Rejection::Resource,
            counter_request,
            |r| {
                resource_attrs(r).retain(|a| a.key != "service.name");
                resource_attrs(r).push(kv_str("service.name", "/usr/bin/mesh-llm"));
            },
        ),
        (
            "resource key twice",
            Rejection::Resource,
            counter_request,
            |r| resource_attrs(r).push(kv_str("service.name", "other")),
        ),
        (
            "resource schema url",
            Rejection::Resource,
            counter_request,
            |r| r.resource_metrics[0].schema_url = "https://x.example".into(),
        ),
        ("other scope", Rejection::Scope, counter_request, |r| {
            r.resource_metrics[0].scope_metrics[0]
                .scope
                .as_mut()
                .unwrap()
                .name = "http".into()
        }),
        ("scope attributes", Rejection::Scope, counter_request, |r| {
            r.resource_metrics[0].scope_metrics[0]
                .scope
                .as_mut()
                .unwrap()
                .attributes
                .push(kv_str("a", "b"))
        }),
        ("no scope", Rejection::Scope, counter_request, |r| {
            r.resource_metrics[0].scope_metrics[0].scope = None
        }),
        (
            "a double for a counter",
            Rejection::Value,
            counter_request,
            |r| number(r).value = Some(NumberValue::AsDouble(1.0)),
        ),
        (
            "a count no double holds",
            Rejection::Value,
            counter_request,
            |r| number(r).value = Some(NumberValue::AsInt((1 << 53) + 1)),
        ),
        ("min above max", Rejection::Value, histogram_request, |r| {
            hist(r).min = Some(30.0);
            hist(r).max = Some(20.0);
        }),
        (
            "instance id of another UUID version",
            Rejection::Resource,
            counter_request,
            |r| {
                resource_attrs(r).retain(|a| a.key != "service.instance.id");
                resource_attrs(r).push(kv_str(
                    "service.instance.id",
                    "0f8a2c1e-3b4d-11ef-8a9b-0c1d2e3f4a5b",
                ));
            },
        ),
        (
            "stale delta point",
            Rejection::Stale,
            counter_request,
            |r| {
                if let Some(Data::Sum(s)) = &mut metric(r).data {
                    s.aggregation_temporality = 1
                }
                number(r).time_unix_nano = at(DAY - 3, 0);
                number(r).start_time_unix_nano = at(DAY - 4, 0);
            },
        ),
        ("negative value", Rejection::Value, counter_request, |r| {
            number(r).value = Some(NumberValue::AsInt(-1))
        }),
        ("infinite value", Rejection::Value, counter_request, |r| {
            number(r).value = Some(NumberValue::AsDouble(f64::INFINITY))
        }),
        ("no value", Rejection::Value, counter_request, |r| {
            number(r).value = None
        }),
        ("exemplars", Rejection::Extra, counter_request, |r| {
            number(r).exemplars.push(Exemplar {
                value: Some(ExemplarValue::AsInt(1)),
                ..Default::default()
            })
        }),
        ("flags", Rejection::Extra, counter_request, |r| {
            number(r).flags = 1
        }),
        ("no time", Rejection::Time, counter_request, |r| {
            number(r).time_unix_nano = 0
        }),
        ("no start", Rejection::Time, counter_request, |r| {
            number(r).start_time_unix_nano = 0
        }),
        ("start after time", Rejection::Time, counter_request, |r| {
            number(r).start_time_unix_nano = at(DAY, 3)
        }),
        ("two days ahead", Rejection::Time, counter_request, |r| {
            number(r).time_unix_nano = at(DAY + 3, 0)
        }),
        ("past i64", Rejection::Time, counter_request, |r| {
            number(r).time_unix_nano = u64::MAX
        }),
    ];
    assert_each_rejected(cases);
}

/// Each case's base passes; mutated, its one point is rejected whole, for
/// the case's reason.
fn assert_each_rejected(cases: Vec<(&str, Rejection, Base, Mutation)>) {
    for (name, reason, base, mutate) in cases {
        let valid = validate(&base(), NOW);
        assert_eq!(valid.points.len(), 1, "{name}: base {:?}", valid.rejected);
        let mut request = base();
        mutate(&mut request);
        let validated = validate(&request, NOW);
        assert!(validated.points.is_empty(), "{name}: accepted");
        assert!(validated.resources.is_empty(), "{name}: resource kept");
        assert_eq!(validated.rejected.total(), 1, "{name}");
        assert_eq!(
            validated.rejected.count(reason),
            1,
            "{name}: {:?}",
            validated.rejected
        );
    }
}

#[test]
fn every_metric_passes_with_the_keys_survey_puts_on_it() {
    // The inference counter: the model's attributes without a launch kind,
    // and its outcome, any of the five.
    let counter = validate(&inference_counter_request(), NOW);
    assert_eq!(counter.rejected.total(), 0, "{:?}", counter.rejected);
    let dimensions = &counter.points[0].attributes.dimensions;
    assert_eq!(dimensions.len(), 12);
    assert!(
        !dimensions
            .iter()
            .any(|(k, _)| *k == AttributeKey::LaunchKind)
    );
    assert_eq!(
        dimensions.last(),
        Some(&(
            AttributeKey::RequestOutcome,
            Dimension::Text("ok".to_string())
        ))
    );
    for outcome in schema::RequestOutcome::ALL {
        let mut r = inference_counter_request();
        set_attr(&mut r, kv_str("mesh_llm.request_outcome", outcome.as_str()));
        assert_eq!(validate(&r, NOW).points.len(), 1, "{outcome}");
    }
    // The inference histograms: the same attributes without the outcome,
    // each with its own unit and bounds.
    let inference: Vec<_> = schema::METRICS.iter().filter(|m| m.prompt_shape).collect();
    assert_eq!(inference.len(), 6);
    for spec in inference
        .iter()
        .filter(|m| m.kind == schema::MetricKind::Histogram)
    {
        let r = request(
            &Node::new(1),
            vec![histogram(
                spec.name,
                inference_attrs("Qwen3-8B"),
                at(DAY, 1),
                at(DAY, 2),
                &[spec.boundaries[3]],
            )],
        );
        let validated = validate(&r, NOW);
        let point = &validated.points[0];
        assert_eq!(validated.rejected.total(), 0, "{}", spec.name);
        assert_eq!(
            (point.metric.name, point.metric.unit),
            (spec.name, spec.unit)
        );
        assert_eq!(point.attributes.dimensions.len(), 11);
    }
    // The lifecycle metrics: the launch's attributes; a failure reason on
    // failed launches; the node's alone on the loaded-model count.
    for spec in schema::METRICS.iter().filter(|m| !m.prompt_shape) {
        let keys = MetricKeys::of_metric(spec);
        assert_eq!(
            keys.allows(AttributeKey::Model),
            spec.name != schema::LOADED_MODELS
        );
        assert!(!keys.allows(AttributeKey::RequestOutcome), "{}", spec.name);
        let attrs = if spec.name == schema::LOADED_MODELS {
            node_attrs()
        } else if keys.allows(AttributeKey::FailureReason) {
            failure_attrs("Qwen3-8B", "spawn_failed")
        } else {
            model_attrs("Qwen3-8B")
        };
        let (start, time) = (at(DAY, 1), at(DAY, 2));
        let metric = match spec.kind {
            schema::MetricKind::Counter => cumulative(spec.name, attrs, start, time, 1),
            schema::MetricKind::Gauge => gauge(spec.name, attrs, time, 1),
            schema::MetricKind::Histogram => {
                histogram(spec.name, attrs, start, time, &[spec.boundaries[0]])
            }
        };
        let validated = validate(&request(&Node::new(1), vec![metric]), NOW);
        assert_eq!(
            validated.points.len(),
            1,
            "{}: {:?}",
            spec.name,
            validated.rejected
        );
    }
    // Only the outcome is a required key (it splits the counter's streams;
    // other keys survey always sends are allowed, not required).
    let required: Vec<_> = schema::METRICS
        .iter()
        .filter(|m| {
            AttributeKey::ALL
                .iter()
                .any(|k| MetricKeys::of_metric(m).requires(*k))
        })
        .map(|m| m.name)
        .collect();
    assert_eq!(required, [schema::INFERENCE_REQUESTS_TOTAL]);
}

#[test]
fn each_inference_rule_rejects_the_whole_point() {
    let cases: Vec<(&str, Rejection, Base, Mutation)> = vec![
        (
            "counter with another unit",
            Rejection::WrongShape,
            inference_counter_request,
            |r| metric(r).unit = "{requests}".into(),
        ),
        (
            "speed in another unit",
            Rejection::WrongShape,
            inference_histogram_request,
            |r| metric(r).unit = "tokens/s".into(),
        ),
        (
            "speed with the token counts' bounds",
            Rejection::WrongShape,
            inference_histogram_request,
            |r| {
                let bounds = schema::TOKEN_BOUNDARIES.to_vec();
                hist(r).bucket_counts = vec![0; bounds.len() + 1];
                hist(r).bucket_counts[3] = 2;
                hist(r).explicit_bounds = bounds;
            },
        ),
        (
            "speed with one bound moved",
            Rejection::WrongShape,
            inference_histogram_request,
            |r| hist(r).explicit_bounds[6] = 60.0,
        ),
        (
            "speed with a bound missing",
            Rejection::WrongShape,
            inference_histogram_request,
            |r| {
                hist(r).explicit_bounds.pop();
                let last = hist(r).bucket_counts.pop().unwrap();
                *hist(r).bucket_counts.last_mut().unwrap() += last;
            },
        ),
        (
            "counter as a gauge",
            Rejection::WrongShape,
            inference_counter_request,
            |r| {
                let Some(Data::Sum(sum)) = metric(r).data.take() else {
                    unreachable!()
                };
                metric(r).data = Some(Data::Gauge(survey_collector::otlp::metrics::v1::Gauge {
                    data_points: sum.data_points,
                }));
            },
        ),
        (
            "speed as a counter",
            Rejection::WrongShape,
            inference_histogram_request,
            |r| {
                *r = request(
                    &Node::new(1),
                    vec![cumulative(
                        schema::INFERENCE_DECODE_TOKENS_PER_S,
                        inference_attrs("Qwen3-8B"),
                        at(DAY, 1),
                        at(DAY, 2),
                        40,
                    )],
                )
            },
        ),
        (
            "outcome survey never sends",
            Rejection::AttributeValue,
            inference_counter_request,
            |r| set_attr(r, kv_str("mesh_llm.request_outcome", "cancelled")),
        ),
        (
            "outcome in capitals",
            Rejection::AttributeValue,
            inference_counter_request,
            |r| set_attr(r, kv_str("mesh_llm.request_outcome", "OK")),
        ),
        (
            "outcome as a number",
            Rejection::AttributeValue,
            inference_counter_request,
            |r| set_attr(r, kv_int("mesh_llm.request_outcome", 0)),
        ),
        (
            "outcome twice",
            Rejection::AttributeKey,
            inference_counter_request,
            |r| attrs(r).push(kv_str("mesh_llm.request_outcome", "timeout")),
        ),
        (
            "counter without its outcome",
            Rejection::AttributeKey,
            inference_counter_request,
            |r| remove_attr(r, "mesh_llm.request_outcome"),
        ),
        (
            "outcome on a speed",
            Rejection::AttributeKey,
            inference_histogram_request,
            |r| set_attr(r, kv_str("mesh_llm.request_outcome", "ok")),
        ),
        (
            "outcome on a launch counter",
            Rejection::AttributeKey,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.request_outcome", "ok")),
        ),
        (
            "outcome on an uptime",
            Rejection::AttributeKey,
            histogram_request,
            |r| set_attr(r, kv_str("mesh_llm.request_outcome", "ok")),
        ),
        (
            "launch kind on the inference counter",
            Rejection::AttributeKey,
            inference_counter_request,
            |r| set_attr(r, kv_str("mesh_llm.launch_kind", "runtime_load")),
        ),
        (
            "launch kind on a speed",
            Rejection::AttributeKey,
            inference_histogram_request,
            |r| set_attr(r, kv_str("mesh_llm.launch_kind", "startup")),
        ),
        (
            "failure reason on the inference counter",
            Rejection::AttributeKey,
            inference_counter_request,
            |r| set_attr(r, kv_str("mesh_llm.failure_reason", "other")),
        ),
        (
            "failure reason on a speed",
            Rejection::AttributeKey,
            inference_histogram_request,
            |r| set_attr(r, kv_str("mesh_llm.failure_reason", "other")),
        ),
        (
            "failure reason on a launch attempt",
            Rejection::AttributeKey,
            counter_request,
            |r| set_attr(r, kv_str("mesh_llm.failure_reason", "spawn_failed")),
        ),
        (
            "failure reason on an uptime",
            Rejection::AttributeKey,
            histogram_request,
            |r| set_attr(r, kv_str("mesh_llm.failure_reason", "other")),
        ),
        (
            "a model on the node's loaded-model count",
            Rejection::AttributeKey,
            loaded_models_request,
            |r| set_attr(r, kv_str("mesh_llm.model", "Qwen3-8B")),
        ),
        (
            "an unknown context bucket on a speed",
            Rejection::AttributeValue,
            inference_histogram_request,
            |r| set_attr(r, kv_str("mesh_llm.context_bucket", "32k")),
        ),
        (
            "a fractional request count",
            Rejection::Value,
            inference_counter_request,
            |r| number(r).value = Some(NumberValue::AsDouble(2.5)),
        ),
        (
            "a negative request count",
            Rejection::Value,
            inference_counter_request,
            |r| number(r).value = Some(NumberValue::AsInt(-3)),
        ),
        (
            "a negative sum of speeds",
            Rejection::Value,
            inference_histogram_request,
            |r| hist(r).sum = Some(-100.0),
        ),
        (
            "a NaN sum of speeds",
            Rejection::Value,
            inference_histogram_request,
            |r| hist(r).sum = Some(f64::NAN),
        ),
        (
            "an infinite largest speed",
            Rejection::Value,
            inference_histogram_request,
            |r| hist(r).max = Some(f64::INFINITY),
        ),
        (
            "speeds whose buckets disagree with their count",
            Rejection::Value,
            inference_histogram_request,
            |r| hist(r).count = 3,
        ),
        (
            "exemplars on a speed",
            Rejection::Extra,
            inference_histogram_request,
            |r| {
                hist(r).exemplars.push(Exemplar {
                    value: Some(ExemplarValue::AsDouble(40.0)),
                    ..Default::default()
                })
            },
        ),
    ];
    assert_each_rejected(cases);
}

#[test]
fn nodes_that_predate_instance_ids_are_accepted() {
    let request = request(
        &Node::legacy(),
        vec![cumulative(
            schema::LAUNCH_TOTAL,
            model_attrs("a"),
            at(DAY, 1),
            at(DAY, 2),
            1,
        )],
    );
    let validated = validate(&request, NOW);
    assert_eq!(validated.points.len(), 1);
    let resource = &validated.resources[0];
    assert!(!resource.attributes.contains("service.instance.id"));
    assert_eq!(resource.node, &*resource.attributes);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use survey_collector::__private::{Dimension, Value};
    use survey_collector::otlp::common::v1::AnyValue;
    use survey_collector::otlp::common::v1::any_value::Value as AnyKind;
    use survey_schema::{AttributeKey, ReceivedValue};

    fn any_value() -> impl Strategy<Value = Option<AnyValue>> {
        let kind = prop_oneof![
            prop::sample::select(vec![
                "Qwen3-8B",
                "/home/a/m.gguf",
                "cuda",
                "<=8k",
                "other",
                "llama.cpp",
                "6f1c2d3e4b5a6978",
                "NVIDIA GeForce RTX 4090",
                "",
                "runtime_load",
                "1.0.0",
            ])
            .prop_map(|s| AnyKind::StringValue(s.to_string())),
            any::<String>().prop_map(AnyKind::StringValue),
            any::<i64>().prop_map(AnyKind::IntValue),
            (0i64..4).prop_map(AnyKind::IntValue),
            any::<bool>().prop_map(AnyKind::BoolValue),
            any::<f64>().prop_map(AnyKind::DoubleValue),
        ];
        proptest::option::weighted(0.95, kind.prop_map(|v| AnyValue { value: Some(v) }))
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        let mut keys: Vec<String> = AttributeKey::ALL
            .iter()
            .map(|k| k.as_str().to_string())
            .collect();
        keys.push("host.name".into());
        keys.push(String::new());
        prop::collection::vec(
            (prop::sample::select(keys), any_value()).prop_map(|(key, value)| KeyValue {
                key,
                value,
                ..Default::default()
            }),
            0..16,
        )
    }

    fn metric_name() -> impl Strategy<Value = String> {
        let mut names: Vec<String> = schema::METRICS.iter().map(|m| m.name.to_string()).collect();
        names.push("other_metric".into());
        prop::sample::select(names)
    }

    /// Points made of allowlisted and foreign keys, good and bad values,
    /// schema and foreign metrics, sane and insane times.
    fn points() -> impl Strategy<Value = Vec<Metric>> {
        let point = (
            metric_name(),
            prop_oneof![Just(None), attributes().prop_map(Some)],
            0u64..7_200_000_000_000,
            prop_oneof![0u64..7_200_000_000_000, any::<u64>()],
            0i64..10,
            0i32..4,
            any::<bool>(),
        );
        prop::collection::vec(
            point.prop_map(
                |(name, attrs, start, time, value, temporality, as_histogram)| {
                    let attrs = attrs.unwrap_or_else(|| model_attrs("Qwen3-8B"));
                    let (start, time) = (at(DAY, 0) + start, at(DAY, 0).saturating_add(time));
                    let mut m = if as_histogram {
                        histogram(&name, attrs, start, time, &[value as f64])
                    } else {
                        counter(&name, attrs, start, time, value as u64, temporality)
                    };
                    if let Some(Data::Histogram(h)) = &mut m.data {
                        h.aggregation_temporality = temporality;
                    }
                    m
                },
            ),
            1..24,
        )
    }

    #[test]
    fn validation_never_panics_and_keeps_only_what_survey_sends() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let accepted = std::cell::Cell::new(0u64);
        let rejected = std::cell::Cell::new(0u64);
        runner
            .run(&(points(), any::<bool>()), |(metrics, extra_resource)| {
                let total = metrics
                    .iter()
                    .map(|m| match &m.data {
                        Some(Data::Sum(s)) => s.data_points.len(),
                        Some(Data::Histogram(h)) => h.data_points.len(),
                        _ => 0,
                    })
                    .sum::<usize>() as u64;
                let mut node = Node::new(1);
                if extra_resource {
                    node.extra.push(kv_str("host.name", "x"));
                }
                let validated = validate(&request(&node, metrics), NOW);
                prop_assert_eq!(
                    validated.points.len() as u64 + validated.rejected.total(),
                    total
                );
                accepted.set(accepted.get() + validated.points.len() as u64);
                rejected.set(rejected.get() + validated.rejected.total());
                for point in &validated.points {
                    prop_assert!(point.resource < validated.resources.len());
                    prop_assert!(schema::metric(point.metric.name).is_some());
                    for (key, value) in &point.attributes.dimensions {
                        let received = match value {
                            Dimension::Text(s) => ReceivedValue::Str(s),
                            Dimension::Int(i) => ReceivedValue::Int(*i),
                            Dimension::Bool(b) => ReceivedValue::Bool(*b),
                        };
                        prop_assert!(key.accepts(received), "{} = {:?}", key, value);
                    }
                    if let Value::Number(v) = point.value {
                        prop_assert!(v.is_finite() && v >= 0.0);
                    }
                }
                if extra_resource {
                    prop_assert!(validated.points.is_empty());
                }
                Ok(())
            })
            .unwrap();
        // Both sides of every check were reached.
        assert!(accepted.get() > 20, "accepted {}", accepted.get());
        assert!(rejected.get() > 100, "rejected {}", rejected.get());
    }
}
