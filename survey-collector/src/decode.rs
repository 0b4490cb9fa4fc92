//! Decode: an OTLP/HTTP request body into an `ExportMetricsServiceRequest`,
//! protobuf or JSON, gzip or not, within fixed size limits.
//!
//! A gzip body is inflated only up to [`MAX_DECOMPRESSED_BYTES`] and one byte
//! more: a gzip bomb is refused without being inflated.

use std::io::Read;

use http::StatusCode;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

/// Largest request body accepted, as sent (compressed or not): 4 MiB.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Largest body accepted after gzip decompression: 16 MiB.
pub const MAX_DECOMPRESSED_BYTES: usize = 16 << 20;

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
            DecodeError::BodyTooLarge | DecodeError::DecompressedTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
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
            ExportMetricsServiceRequest::decode(plain).map_err(|e| DecodeError::Malformed {
                encoding: "protobuf",
                detail: shorten(&e.to_string()),
            })
        }
        Encoding::Json => serde_json::from_slice(plain).map_err(|e| DecodeError::Malformed {
            encoding: "JSON",
            detail: shorten(&e.to_string()),
        }),
    }
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
        // 64 MiB of zeros compress to about 64 KiB.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..64 {
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
