//! The collector's OTLP messages against `opentelemetry-proto`, the
//! encoder survey's exporter uses: every request it can build decodes, as
//! protobuf and as OTLP/JSON, to the same content (compared as protobuf
//! bytes, so NaN compares too), and the collector's answers decode with it.

use opentelemetry_proto::tonic as theirs;
use proptest::prelude::*;
use prost::Message;
use survey_collector::__private::{Compression, Encoding, decode};
use survey_collector::otlp as ours;

use theirs::common::v1::{AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue};
use theirs::common::v1::{KeyValueList, any_value::Value as Any};
use theirs::metrics::v1 as m;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,8}"
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |v| v.is_finite())
}

/// A double as OTLP/JSON carries it: finite, or NaN and the infinities.
fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => finite(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

fn small<T: std::fmt::Debug>(element: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(element, 0..3)
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = proptest::option::of(prop_oneof![
        text().prop_map(Any::StringValue),
        any::<bool>().prop_map(Any::BoolValue),
        any::<i64>().prop_map(Any::IntValue),
        finite().prop_map(Any::DoubleValue),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Any::BytesValue),
        any::<i32>().prop_map(Any::StringValueStrindex),
    ])
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            small(inner.clone()).prop_map(|values| AnyValue {
                value: Some(Any::ArrayValue(ArrayValue { values })),
            }),
            small((text(), proptest::option::of(inner))).prop_map(|pairs| AnyValue {
                value: Some(Any::KvlistValue(KeyValueList {
                    values: pairs
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value,
                            key_strindex: 0,
                        })
                        .collect(),
                })),
            }),
        ]
    })
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    (
        text(),
        proptest::option::of(any_value()),
        prop_oneof![3 => Just(0), 1 => any::<i32>()],
    )
        .prop_map(|(key, value, key_strindex)| KeyValue {
            key,
            value,
            key_strindex,
        })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    small(key_value())
}

fn exemplar() -> impl Strategy<Value = m::Exemplar> {
    (
        attributes(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..9),
        proptest::collection::vec(any::<u8>(), 0..17),
        proptest::option::of(prop_oneof![
            finite().prop_map(m::exemplar::Value::AsDouble),
            any::<i64>().prop_map(m::exemplar::Value::AsInt),
        ]),
    )
        .prop_map(
            |(filtered_attributes, time_unix_nano, span_id, trace_id, value)| m::Exemplar {
                filtered_attributes,
                time_unix_nano,
                span_id,
                trace_id,
                value,
            },
        )
}

fn number_point() -> impl Strategy<Value = m::NumberDataPoint> {
    (
        attributes(),
        any::<u64>(),
        any::<u64>(),
        small(exemplar()),
        any::<u32>(),
        proptest::option::of(prop_oneof![
            finite().prop_map(m::number_data_point::Value::AsDouble),
            any::<i64>().prop_map(m::number_data_point::Value::AsInt),
        ]),
    )
        .prop_map(
            |(attributes, start_time_unix_nano, time_unix_nano, exemplars, flags, value)| {
                m::NumberDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    exemplars,
                    flags,
                    value,
                }
            },
        )
}

fn histogram_point() -> impl Strategy<Value = m::HistogramDataPoint> {
    (
        (attributes(), any::<u64>(), any::<u64>(), any::<u64>()),
        proptest::option::of(finite()),
        small(any::<u64>()),
        small(finite()),
        small(exemplar()),
        any::<u32>(),
        proptest::option::of(finite()),
        proptest::option::of(finite()),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                sum,
                bucket_counts,
                explicit_bounds,
                exemplars,
                flags,
                min,
                max,
            )| m::HistogramDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                bucket_counts,
                explicit_bounds,
                exemplars,
                flags,
                min,
                max,
            },
        )
}

fn buckets() -> impl Strategy<Value = m::exponential_histogram_data_point::Buckets> {
    (any::<i32>(), small(any::<u64>())).prop_map(|(offset, bucket_counts)| {
        m::exponential_histogram_data_point::Buckets {
            offset,
            bucket_counts,
        }
    })
}

fn exponential_point() -> impl Strategy<Value = m::ExponentialHistogramDataPoint> {
    (
        (attributes(), any::<u64>(), any::<u64>(), any::<u64>()),
        (proptest::option::of(finite()), any::<i32>(), any::<u64>()),
        (
            proptest::option::of(buckets()),
            proptest::option::of(buckets()),
        ),
        (any::<u32>(), small(exemplar())),
        (
            proptest::option::of(finite()),
            proptest::option::of(finite()),
            finite(),
        ),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                (sum, scale, zero_count),
                (positive, negative),
                (flags, exemplars),
                (min, max, zero_threshold),
            )| m::ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                scale,
                zero_count,
                positive,
                negative,
                flags,
                exemplars,
                min,
                max,
                zero_threshold,
            },
        )
}

fn summary_point() -> impl Strategy<Value = m::SummaryDataPoint> {
    (
        (attributes(), any::<u64>(), any::<u64>(), any::<u64>()),
        finite(),
        small((double(), double()).prop_map(|(quantile, value)| {
            m::summary_data_point::ValueAtQuantile { quantile, value }
        })),
        any::<u32>(),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                sum,
                quantile_values,
                flags,
            )| m::SummaryDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                quantile_values,
                flags,
            },
        )
}

fn data() -> impl Strategy<Value = Option<m::metric::Data>> {
    use m::metric::Data;
    proptest::option::of(prop_oneof![
        small(number_point()).prop_map(|data_points| Data::Gauge(m::Gauge { data_points })),
        (small(number_point()), any::<i32>(), any::<bool>()).prop_map(
            |(data_points, aggregation_temporality, is_monotonic)| Data::Sum(m::Sum {
                data_points,
                aggregation_temporality,
                is_monotonic,
            })
        ),
        (small(histogram_point()), any::<i32>()).prop_map(
            |(data_points, aggregation_temporality)| Data::Histogram(m::Histogram {
                data_points,
                aggregation_temporality,
            })
        ),
        (small(exponential_point()), any::<i32>()).prop_map(
            |(data_points, aggregation_temporality)| {
                Data::ExponentialHistogram(m::ExponentialHistogram {
                    data_points,
                    aggregation_temporality,
                })
            }
        ),
        small(summary_point()).prop_map(|data_points| Data::Summary(m::Summary { data_points })),
    ])
}

fn metric() -> impl Strategy<Value = m::Metric> {
    (text(), text(), text(), attributes(), data()).prop_map(
        |(name, description, unit, metadata, data)| m::Metric {
            name,
            description,
            unit,
            metadata,
            data,
        },
    )
}

fn scope_metrics() -> impl Strategy<Value = m::ScopeMetrics> {
    (
        proptest::option::of((text(), text(), attributes(), any::<u32>()).prop_map(
            |(name, version, attributes, dropped_attributes_count)| InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count,
            },
        )),
        small(metric()),
        text(),
    )
        .prop_map(|(scope, metrics, schema_url)| m::ScopeMetrics {
            scope,
            metrics,
            schema_url,
        })
}

fn entity_ref() -> impl Strategy<Value = EntityRef> {
    (text(), text(), small(text()), small(text())).prop_map(
        |(schema_url, r#type, id_keys, description_keys)| EntityRef {
            schema_url,
            r#type,
            id_keys,
            description_keys,
        },
    )
}

fn request() -> impl Strategy<Value = theirs::collector::metrics::v1::ExportMetricsServiceRequest> {
    let resource = (attributes(), any::<u32>(), small(entity_ref())).prop_map(
        |(attributes, dropped_attributes_count, entity_refs)| theirs::resource::v1::Resource {
            attributes,
            dropped_attributes_count,
            entity_refs,
        },
    );
    small(
        (
            proptest::option::of(resource),
            small(scope_metrics()),
            text(),
        )
            .prop_map(|(resource, scope_metrics, schema_url)| m::ResourceMetrics {
                resource,
                scope_metrics,
                schema_url,
            }),
    )
    .prop_map(
        |resource_metrics| theirs::collector::metrics::v1::ExportMetricsServiceRequest {
            resource_metrics,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn protobuf_requests_decode_to_the_same_content(request in request()) {
        let bytes = request.encode_to_vec();
        let decoded = decode(&bytes, Encoding::Protobuf, Compression::None).unwrap();
        prop_assert_eq!(decoded.encode_to_vec(), bytes);
    }

    #[test]
    fn json_requests_decode_to_the_same_content(request in request()) {
        let json = serde_json::to_vec(&request).unwrap();
        let decoded = decode(&json, Encoding::Json, Compression::None)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&json))))?;
        prop_assert_eq!(decoded.encode_to_vec(), request.encode_to_vec());
        // And the collector's own OTLP/JSON reads back the same.
        let again = serde_json::to_vec(&decoded).unwrap();
        let decoded_again = decode(&again, Encoding::Json, Compression::None).unwrap();
        prop_assert_eq!(decoded_again.encode_to_vec(), request.encode_to_vec());
    }

    #[test]
    fn responses_decode_with_opentelemetry_proto(
        partial in proptest::option::of((any::<i64>(), text())),
    ) {
        use ours::collector::metrics::v1::{
            ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
        };
        let response = ExportMetricsServiceResponse {
            partial_success: partial.clone().map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        };
        let expected = theirs::collector::metrics::v1::ExportMetricsServiceResponse {
            partial_success: partial.clone().map(|(rejected_data_points, error_message)| {
                theirs::collector::metrics::v1::ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        };
        let bytes = response.encode_to_vec();
        prop_assert_eq!(
            &theirs::collector::metrics::v1::ExportMetricsServiceResponse::decode(&bytes[..])
                .unwrap(),
            &expected
        );
        prop_assert_eq!(expected.encode_to_vec(), bytes);
        // OTLP/JSON: `{}`, or the count as a string and the message.
        let json: serde_json::Value = serde_json::to_value(&response).unwrap();
        let written = match &partial {
            None => serde_json::json!({}),
            Some((n, message)) => serde_json::json!({
                "partialSuccess": {"rejectedDataPoints": n.to_string(), "errorMessage": message}
            }),
        };
        prop_assert_eq!(&json, &written);
        // opentelemetry-proto writes the count as a number: both read back.
        for text in [serde_json::to_string(&expected).unwrap(), json.to_string()] {
            let read: ExportMetricsServiceResponse = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&read, &response);
        }
    }
}

#[test]
fn otlp_json_forms_decode() {
    let json = br#"{"resourceMetrics":[{"unknown":{"a":[1]},"scopeMetrics":[{"metrics":[
        {"name":"a","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA",
         "isMonotonic":true,"dataPoints":[{"asInt":5,"timeUnixNano":1e3,
         "startTimeUnixNano":"7","attributes":[{"key":"k","value":{"intValue":3}},
         {"key":"b","value":{"bytesValue":"AQI"}}],
         "exemplars":[{"traceId":"0A0b","asDouble":"NaN"}]}]}},
        {"name":"b","histogram":{"aggregationTemporality":2,"dataPoints":[{"count":"3",
         "bucketCounts":[1,"2"],"explicitBounds":[1.5],"sum":"Infinity","min":null}]}}]}]}]}"#;
    let request = decode(json, Encoding::Json, Compression::None).unwrap();
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    let Some(ours::metrics::v1::metric::Data::Sum(sum)) = &metrics[0].data else {
        panic!("{metrics:?}");
    };
    assert_eq!(sum.aggregation_temporality, 1);
    let point = &sum.data_points[0];
    assert_eq!(
        point.value,
        Some(ours::metrics::v1::number_data_point::Value::AsInt(5))
    );
    assert_eq!(
        (point.start_time_unix_nano, point.time_unix_nano),
        (7, 1000)
    );
    use ours::common::v1::any_value::Value;
    assert_eq!(
        point.attributes[0].value.as_ref().unwrap().value,
        Some(Value::IntValue(3))
    );
    assert_eq!(
        point.attributes[1].value.as_ref().unwrap().value,
        Some(Value::BytesValue(vec![1, 2]))
    );
    assert_eq!(point.exemplars[0].trace_id, vec![10, 11]);
    let Some(ours::metrics::v1::metric::Data::Histogram(histogram)) = &metrics[1].data else {
        panic!("{metrics:?}");
    };
    let point = &histogram.data_points[0];
    assert_eq!(
        (point.count, &point.bucket_counts[..], point.sum, point.min),
        (3, &[1, 2][..], Some(f64::INFINITY), None)
    );
    // A oneof with two members set, or a bad type, is not a request.
    for bad in [
        &br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{},"sum":{}}]}]}]}"#[..],
        br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"k","value":
            {"stringValue":"x","intValue":"1"}}]}}]}"#,
        br#"{"resourceMetrics":7}"#,
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":
            [{"asInt":"x"}]}}]}]}]}"#,
    ] {
        assert!(decode(bad, Encoding::Json, Compression::None).is_err());
    }
}
