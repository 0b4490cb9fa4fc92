//! Decode: an OTLP/HTTP request body into an `ExportMetricsServiceRequest`,
//! protobuf or JSON, gzip or not, within fixed size limits.
//!
//! A gzip body is inflated only up to [`MAX_DECOMPRESSED_BYTES`] and one byte
//! more: a gzip bomb is refused without being inflated. Before decoding, the
//! memory the decoded request would take is estimated from the wire (tiny
//! elements such as empty messages decode to a hundred times their size),
//! and a body that would take more than [`MAX_DECODED_BYTES`] is refused.

use std::io::Read;

use http::StatusCode;
use prost::Message;

use crate::otlp::collector::metrics::v1::ExportMetricsServiceRequest;

/// Largest request body accepted, as sent (compressed or not): 4 MiB.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Largest body accepted after gzip decompression: 16 MiB.
pub const MAX_DECOMPRESSED_BYTES: usize = 16 << 20;
/// Most memory a decoded request may take, as estimated before decoding:
/// 64 MiB (a request of 10,000 survey points takes about a third of it).
pub const MAX_DECODED_BYTES: usize = 64 << 20;
/// Deepest nesting of messages accepted (attribute values can nest).
const MAX_DEPTH: u32 = 32;

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` header names (parameters such as
    /// `charset` are ignored).
    pub fn from_content_type(content_type: Option<&str>) -> Result<Encoding, DecodeError> {
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/x-protobuf") => Ok(Encoding::Protobuf),
            Some("application/json") => Ok(Encoding::Json),
            _ => Err(DecodeError::UnsupportedContentType(shorten(
                content_type.unwrap_or("none"),
            ))),
        }
    }

    /// The `Content-Type` of answers in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The content coding of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No `Content-Encoding`, or `identity`.
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
}

impl Compression {
    /// The compression a `Content-Encoding` header names.
    pub fn from_content_encoding(encoding: Option<&str>) -> Result<Compression, DecodeError> {
        match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Compression::None),
            Some("gzip") => Ok(Compression::Gzip),
            Some(_) => Err(DecodeError::UnsupportedEncoding(shorten(
                encoding.unwrap_or_default(),
            ))),
        }
    }
}

/// Why a body could not be decoded; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Neither protobuf nor JSON.
    #[error("unsupported content type {0:?}; expected application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    /// A content coding other than gzip.
    #[error("unsupported content encoding {0:?}; expected gzip or none")]
    UnsupportedEncoding(String),
    /// The body as sent is over [`MAX_BODY_BYTES`].
    #[error("request body over the limit of {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    /// The body inflates past [`MAX_DECOMPRESSED_BYTES`].
    #[error("decompressed request body over the limit of {MAX_DECOMPRESSED_BYTES} bytes")]
    DecompressedTooLarge,
    /// The body would decode into more than [`MAX_DECODED_BYTES`].
    #[error("request body would decode into more than {MAX_DECODED_BYTES} bytes")]
    DecodedTooLarge,
    /// `Content-Encoding: gzip` but not gzip data.
    #[error("request body is not valid gzip")]
    Gzip,
    /// Not an `ExportMetricsServiceRequest` in the announced encoding.
    #[error("request body is not an OTLP ExportMetricsServiceRequest in {encoding}: {detail}")]
    Malformed {
        /// `protobuf` or `JSON`.
        encoding: &'static str,
        /// What the decoder said.
        detail: String,
    },
}

impl DecodeError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            DecodeError::UnsupportedContentType(_) | DecodeError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            DecodeError::BodyTooLarge
            | DecodeError::DecompressedTooLarge
            | DecodeError::DecodedTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeError::Gzip | DecodeError::Malformed { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

/// Decodes a request body.
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    compression: Compression,
) -> Result<ExportMetricsServiceRequest, DecodeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DecodeError::BodyTooLarge);
    }
    let inflated;
    let plain = match compression {
        Compression::None => body,
        Compression::Gzip => {
            inflated = gunzip(body)?;
            &inflated[..]
        }
    };
    match encoding {
        Encoding::Protobuf => {
            let mut estimate = 0;
            walk(plain, Shape::Request, 0, &mut estimate)?;
            ExportMetricsServiceRequest::decode(plain).map_err(|e| DecodeError::Malformed {
                encoding: "protobuf",
                detail: shorten(&e.to_string()),
            })
        }
        Encoding::Json => {
            if json_estimate(plain) > MAX_DECODED_BYTES {
                return Err(DecodeError::DecodedTooLarge);
            }
            serde_json::from_slice(plain).map_err(|e| DecodeError::Malformed {
                encoding: "JSON",
                detail: shorten(&e.to_string()),
            })
        }
    }
}

/// The message types of an OTLP metrics request, for the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Request,
    ResourceMetrics,
    Resource,
    EntityRef,
    ScopeMetrics,
    Scope,
    Metric,
    /// A gauge or a sum: both hold number points in field 1.
    NumberSeries,
    Histogram,
    ExponentialHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExponentialPoint,
    ExponentialBuckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// What a length-delimited field holds.
enum Field {
    Message(Shape),
    /// Text or bytes: a heap buffer of its length.
    Text,
    /// Packed fixed-width numbers: as long in memory as on the wire.
    PackedFixed,
    /// Packed varints: up to 8 bytes in memory per byte on the wire.
    PackedVarint,
    /// Not a field of the type: prost skips it.
    Unknown,
}

impl Shape {
    /// Memory of one decoded value of this type, besides what it owns.
    fn size(self) -> usize {
        use crate::otlp::common::v1 as common;
        use crate::otlp::metrics::v1 as metrics;
        use std::mem::size_of;
        match self {
            Shape::Request => size_of::<ExportMetricsServiceRequest>(),
            Shape::ResourceMetrics => size_of::<metrics::ResourceMetrics>(),
            Shape::Resource => size_of::<crate::otlp::resource::v1::Resource>(),
            Shape::EntityRef => size_of::<common::EntityRef>(),
            Shape::ScopeMetrics => size_of::<metrics::ScopeMetrics>(),
            Shape::Scope => size_of::<common::InstrumentationScope>(),
            Shape::Metric => size_of::<metrics::Metric>(),
            Shape::NumberSeries
            | Shape::Histogram
            | Shape::ExponentialHistogram
            | Shape::Summary => 0,
            Shape::NumberPoint => size_of::<metrics::NumberDataPoint>(),
            Shape::HistogramPoint => size_of::<metrics::HistogramDataPoint>(),
            Shape::ExponentialPoint => size_of::<metrics::ExponentialHistogramDataPoint>(),
            Shape::ExponentialBuckets => 0,
            Shape::SummaryPoint => size_of::<metrics::SummaryDataPoint>(),
            Shape::Quantile => size_of::<metrics::summary_data_point::ValueAtQuantile>(),
            Shape::Exemplar => size_of::<metrics::Exemplar>(),
            Shape::KeyValue => size_of::<common::KeyValue>(),
            Shape::AnyValue => size_of::<common::AnyValue>(),
            Shape::ArrayValue | Shape::KeyValueList => 0,
        }
    }

    /// What field `number` of this type holds, when length-delimited.
    fn field(self, number: u64) -> Field {
        use Field::{Message, PackedFixed, PackedVarint, Text, Unknown};
        match (self, number) {
            (Shape::Request, 1) => Message(Shape::ResourceMetrics),
            (Shape::ResourceMetrics, 1) => Message(Shape::Resource),
            (Shape::ResourceMetrics, 2) => Message(Shape::ScopeMetrics),
            (Shape::ResourceMetrics, 3) => Text,
            (Shape::Resource, 1) => Message(Shape::KeyValue),
            (Shape::Resource, 3) => Message(Shape::EntityRef),
            (Shape::EntityRef, 1..=4) => Text,
            (Shape::ScopeMetrics, 1) => Message(Shape::Scope),
            (Shape::ScopeMetrics, 2) => Message(Shape::Metric),
            (Shape::ScopeMetrics, 3) => Text,
            (Shape::Scope, 1 | 2) => Text,
            (Shape::Scope, 3) => Message(Shape::KeyValue),
            (Shape::Metric, 1..=3) => Text,
            (Shape::Metric, 5 | 7) => Message(Shape::NumberSeries),
            (Shape::Metric, 9) => Message(Shape::Histogram),
            (Shape::Metric, 10) => Message(Shape::ExponentialHistogram),
            (Shape::Metric, 11) => Message(Shape::Summary),
            (Shape::Metric, 12) => Message(Shape::KeyValue),
            (Shape::NumberSeries, 1) => Message(Shape::NumberPoint),
            (Shape::Histogram, 1) => Message(Shape::HistogramPoint),
            (Shape::ExponentialHistogram, 1) => Message(Shape::ExponentialPoint),
            (Shape::Summary, 1) => Message(Shape::SummaryPoint),
            (Shape::NumberPoint, 7) => Message(Shape::KeyValue),
            (Shape::NumberPoint, 5) => Message(Shape::Exemplar),
            (Shape::HistogramPoint, 9) => Message(Shape::KeyValue),
            (Shape::HistogramPoint, 8) => Message(Shape::Exemplar),
            (Shape::HistogramPoint, 6 | 7) => PackedFixed,
            (Shape::ExponentialPoint, 1) => Message(Shape::KeyValue),
            (Shape::ExponentialPoint, 8 | 9) => Message(Shape::ExponentialBuckets),
            (Shape::ExponentialPoint, 11) => Message(Shape::Exemplar),
            (Shape::ExponentialBuckets, 2) => PackedVarint,
            (Shape::SummaryPoint, 7) => Message(Shape::KeyValue),
            (Shape::SummaryPoint, 6) => Message(Shape::Quantile),
            (Shape::Exemplar, 7) => Message(Shape::KeyValue),
            (Shape::Exemplar, 4 | 5) => Text,
            (Shape::KeyValue, 1) => Text,
            (Shape::KeyValue, 2) => Message(Shape::AnyValue),
            (Shape::AnyValue, 1 | 7) => Text,
            (Shape::AnyValue, 5) => Message(Shape::ArrayValue),
            (Shape::AnyValue, 6) => Message(Shape::KeyValueList),
            (Shape::ArrayValue, 1) => Message(Shape::AnyValue),
            (Shape::KeyValueList, 1) => Message(Shape::KeyValue),
            _ => Unknown,
        }
    }
}

/// Walks the protobuf wire format of a message of type `shape`, adding up
/// the memory its decoded form takes in `estimate`, and stops as soon as
/// that passes [`MAX_DECODED_BYTES`]. Nothing is allocated.
fn walk(mut buf: &[u8], shape: Shape, depth: u32, estimate: &mut usize) -> Result<(), DecodeError> {
    let malformed = |detail: &str| DecodeError::Malformed {
        encoding: "protobuf",
        detail: detail.to_string(),
    };
    if depth > MAX_DEPTH {
        return Err(malformed("messages nested too deep"));
    }
    while !buf.is_empty() {
        let key = varint(&mut buf).ok_or_else(|| malformed("bad field key"))?;
        let skip = match key & 7 {
            0 => {
                varint(&mut buf).ok_or_else(|| malformed("bad varint"))?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len = varint(&mut buf).ok_or_else(|| malformed("bad length"))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|len| *len <= buf.len())
                    .ok_or_else(|| malformed("length past the end"))?;
                let (content, rest) = buf.split_at(len);
                buf = rest;
                let string = std::mem::size_of::<String>();
                *estimate = estimate.saturating_add(match shape.field(key >> 3) {
                    Field::Message(inner) => inner.size(),
                    Field::Text => string + len,
                    Field::PackedFixed => len,
                    Field::PackedVarint => len.saturating_mul(8),
                    Field::Unknown => 0,
                });
                if *estimate > MAX_DECODED_BYTES {
                    return Err(DecodeError::DecodedTooLarge);
                }
                if let Field::Message(inner) = shape.field(key >> 3) {
                    walk(content, inner, depth + 1, estimate)?;
                }
                0
            }
            _ => return Err(malformed("unsupported wire type")),
        };
        if skip > buf.len() {
            return Err(malformed("field past the end"));
        }
        buf = &buf[skip..];
    }
    Ok(())
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// An upper bound of the memory an OTLP/JSON body decodes into: each
/// object weighs the message type its key names (the largest type for a
/// key it does not know), each string a `String` plus its text, each array
/// element at least a number.
fn json_estimate(body: &[u8]) -> usize {
    /// What encloses the scanner's position.
    enum Frame {
        /// An object, with the key of the member being read.
        Object { key: Vec<u8>, at_key: bool },
        /// An array, with the key it is the value of.
        Array { key: Vec<u8> },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut estimate = body.len();
    let mut string: Option<Vec<u8>> = None;
    let mut escaped = false;
    for &byte in body {
        if let Some(text) = &mut string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    if let Some(Frame::Object { key, at_key: true }) = stack.last_mut() {
                        *key = std::mem::take(text);
                    }
                    string = None;
                }
                _ if text.len() < 32 => text.push(byte),
                _ => {}
            }
            continue;
        }
        let enclosing_key = |stack: &[Frame]| match stack.last() {
            Some(Frame::Object { key, .. }) | Some(Frame::Array { key }) => Some(key.clone()),
            None => None,
        };
        let element = std::mem::size_of::<f64>();
        match byte {
            b'"' => {
                string = Some(Vec::new());
                estimate = estimate.saturating_add(std::mem::size_of::<String>());
            }
            b'{' => {
                estimate = estimate.saturating_add(json_weight(enclosing_key(&stack).as_deref()));
                stack.push(Frame::Object {
                    key: Vec::new(),
                    at_key: true,
                });
            }
            b'[' => {
                estimate = estimate.saturating_add(element);
                stack.push(Frame::Array {
                    key: enclosing_key(&stack).unwrap_or_default(),
                });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b':' => {
                if let Some(Frame::Object { at_key, .. }) = stack.last_mut() {
                    *at_key = false;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { at_key, .. }) => *at_key = true,
                Some(Frame::Array { .. }) => estimate = estimate.saturating_add(element),
                None => {}
            },
            _ => {}
        }
        if estimate > MAX_DECODED_BYTES {
            break;
        }
    }
    estimate
}

/// The memory of one object that is the value of (or in an array under)
/// member `key`; `None` for the top level.
fn json_weight(key: Option<&[u8]>) -> usize {
    let shape = match key {
        None => Shape::Request,
        Some(b"resourceMetrics") => Shape::ResourceMetrics,
        Some(b"resource") => Shape::Resource,
        Some(b"entityRefs") => Shape::EntityRef,
        Some(b"scopeMetrics") => Shape::ScopeMetrics,
        Some(b"scope") => Shape::Scope,
        Some(b"metrics") => Shape::Metric,
        // Held inline by their parents: nothing of their own.
        Some(
            b"gauge"
            | b"sum"
            | b"histogram"
            | b"exponentialHistogram"
            | b"summary"
            | b"positive"
            | b"negative"
            | b"arrayValue"
            | b"kvlistValue",
        ) => Shape::NumberSeries,
        Some(b"attributes" | b"metadata" | b"filteredAttributes" | b"values") => Shape::KeyValue,
        Some(b"value") => Shape::AnyValue,
        Some(b"exemplars") => Shape::Exemplar,
        Some(b"quantileValues") => Shape::Quantile,
        // Data points, and keys no message has: the largest type.
        _ => Shape::ExponentialPoint,
    };
    shape.size()
}

/// Inflates at most [`MAX_DECOMPRESSED_BYTES`] + 1 bytes.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_DECOMPRESSED_BYTES));
    flate2::read::GzDecoder::new(body)
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Gzip)?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(DecodeError::DecompressedTooLarge);
    }
    Ok(out)
}

/// At most 80 characters of sender-supplied text, for an answer to that sender.
fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn content_types_and_encodings() {
        assert_eq!(
            Encoding::from_content_type(Some("application/x-protobuf")).unwrap(),
            Encoding::Protobuf
        );
        assert_eq!(
            Encoding::from_content_type(Some("Application/JSON; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        for bad in [None, Some("text/plain"), Some("application/grpc")] {
            let err = Encoding::from_content_type(bad).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        assert_eq!(
            Compression::from_content_encoding(None).unwrap(),
            Compression::None
        );
        assert_eq!(
            Compression::from_content_encoding(Some("GZIP")).unwrap(),
            Compression::Gzip
        );
        let err = Compression::from_content_encoding(Some("br")).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn a_gzip_bomb_is_refused_without_inflating_it() {
        // 17 MiB of zeros compress to about 17 KiB.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..17 {
            encoder.write_all(&chunk).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < MAX_BODY_BYTES);
        let err = decode(&bomb, Encoding::Protobuf, Compression::Gzip).unwrap_err();
        assert!(matches!(err, DecodeError::DecompressedTooLarge), "{err}");
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn bodies_decode_or_say_why_not() {
        let request = ExportMetricsServiceRequest::default();
        let bytes = request.encode_to_vec();
        assert_eq!(
            decode(&gzip(&bytes), Encoding::Protobuf, Compression::Gzip).unwrap(),
            request
        );
        assert_eq!(
            decode(b"{}", Encoding::Json, Compression::None).unwrap(),
            request
        );
        let err = decode(b"not gzip", Encoding::Json, Compression::Gzip).unwrap_err();
        assert!(matches!(err, DecodeError::Gzip));
        let err = decode(b"\xff\xff\xff", Encoding::Protobuf, Compression::None).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err = decode(b"[1,2", Encoding::Json, Compression::None).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let big = vec![0u8; MAX_BODY_BYTES + 1];
        let err = decode(&big, Encoding::Protobuf, Compression::None).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn tiny_elements_that_decode_large_are_refused_before_decoding() {
        // 16 MiB of empty ResourceMetrics: 16 KiB gzipped, gigabytes decoded.
        let empties = [0x0a, 0x00].repeat(8 << 20);
        let small = gzip(&empties);
        assert!(small.len() < 64 << 10, "{}", small.len());
        let err = decode(&small, Encoding::Protobuf, Compression::Gzip).unwrap_err();
        assert!(matches!(err, DecodeError::DecodedTooLarge), "{err}");
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // The same in JSON.
        let mut json = b"{\"resourceMetrics\":[".to_vec();
        json.extend(b"{},".repeat(1 << 20));
        json.extend(b"{}]}");
        let err = decode(&gzip(&json), Encoding::Json, Compression::Gzip).unwrap_err();
        assert!(matches!(err, DecodeError::DecodedTooLarge), "{err}");
        // Long arrays of numbers.
        let mut numbers = b"{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"histogram\":\
            {\"dataPoints\":[{\"explicitBounds\":[0"
            .to_vec();
        numbers.extend(b",0".repeat((8 << 20) - 64));
        numbers.extend(b"]}]}}]}]}]}");
        let err = decode(&gzip(&numbers), Encoding::Json, Compression::Gzip).unwrap_err();
        assert!(matches!(err, DecodeError::DecodedTooLarge), "{err}");
        // Braces inside strings are text, not objects.
        let text = format!(
            "{{\"resourceMetrics\":[],\"x\":\"{}\"}}",
            "{\\\"".repeat(1 << 20)
        );
        assert!(json_estimate(text.as_bytes()) < MAX_DECODED_BYTES);
    }

    #[test]
    fn the_estimate_bounds_what_decoding_allocates() {
        use crate::otlp::common::v1::{AnyValue, KeyValue, any_value};
        use crate::otlp::metrics::v1::{
            HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, metric,
        };
        let kv = |k: &str| KeyValue {
            key: k.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("v".repeat(20))),
            }),
            ..Default::default()
        };
        let point = HistogramDataPoint {
            attributes: (0..13).map(|i| kv(&format!("mesh_llm.key{i}"))).collect(),
            bucket_counts: vec![1; 15],
            explicit_bounds: vec![1.0; 14],
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(metric::Data::Histogram(
                            crate::otlp::metrics::v1::Histogram {
                                data_points: vec![point; 10_000],
                                aggregation_temporality: 2,
                            },
                        )),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = request.encode_to_vec();
        let mut estimate = 0;
        walk(&bytes, Shape::Request, 0, &mut estimate).unwrap();
        // 10,000 histogram points of 13 attributes fit, well under the limit.
        assert!(estimate < MAX_DECODED_BYTES / 2, "{estimate}");
        assert!(estimate > 10_000 * (176 + 13 * (64 + 32)), "{estimate}");
        let decoded = decode(&gzip(&bytes), Encoding::Protobuf, Compression::Gzip).unwrap();
        assert_eq!(decoded, request);
        let json = serde_json::to_vec(&request).unwrap();
        let decoded = decode(&gzip(&json), Encoding::Json, Compression::Gzip).unwrap();
        assert_eq!(decoded, request);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            json in proptest::prelude::any::<bool>(),
            gz in proptest::prelude::any::<bool>(),
        ) {
            let encoding = if json { Encoding::Json } else { Encoding::Protobuf };
            let body = if gz { gzip(&body) } else { body };
            let compression = if gz { Compression::Gzip } else { Compression::None };
            let _ = decode(&body, encoding, compression);
        }
    }
}
