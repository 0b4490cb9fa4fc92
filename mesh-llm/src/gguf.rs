//! Just enough of the GGUF format to read a model's facts from its header
//! (`general.architecture`, `general.file_type`, any string key) and to write
//! small model files for tests and demos.
//!
//! Reading is bounded: only the header is read, strings and arrays have size
//! limits, and a file that is not GGUF is an error, never a panic.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
/// Longest string value read from a header.
const MAX_STRING: u64 = 1 << 20;
/// Most key/value pairs read from a header.
const MAX_KEYS: u64 = 1 << 16;
/// Most elements of one array value skipped.
const MAX_ARRAY: u64 = 1 << 24;

/// A metadata value kept from the header (arrays are skipped).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any integer type.
    Int(i64),
    /// `f32` or `f64`.
    Float(f64),
    /// `bool`.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
}

/// Why a header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    /// Not a GGUF file.
    #[error("not a GGUF file (bad magic)")]
    BadMagic,
    /// An unsupported version.
    #[error("unsupported GGUF version {0}")]
    Version(u32),
    /// Structurally invalid.
    #[error("malformed GGUF header: {0}")]
    Malformed(&'static str),
}

/// The metadata of a GGUF file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// Every scalar and string key/value.
    pub values: BTreeMap<String, Value>,
}

impl Metadata {
    /// A string value.
    pub fn string(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer value.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.values.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.string("general.architecture")
    }

    /// `general.file_type` as a quantization name (`Q4_K_M`).
    pub fn quantization(&self) -> Option<&'static str> {
        self.int("general.file_type").and_then(file_type_name)
    }
}

/// Reads the header of the GGUF file at `path`.
pub fn read(path: &Path) -> Result<Metadata, GgufError> {
    let file = std::fs::File::open(path)?;
    read_from(&mut BufReader::new(file))
}

/// Reads a GGUF header from `r`.
pub fn read_from(r: &mut impl Read) -> Result<Metadata, GgufError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(GgufError::BadMagic);
    }
    let version = read_u32(r)?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let _tensor_count = read_u64(r)?;
    let kv_count = read_u64(r)?;
    if kv_count > MAX_KEYS {
        return Err(GgufError::Malformed("too many metadata keys"));
    }
    let mut values = BTreeMap::new();
    for _ in 0..kv_count {
        let key = read_string(r)?;
        let kind = read_u32(r)?;
        if let Some(value) = read_value(r, kind)? {
            values.insert(key, value);
        }
    }
    Ok(Metadata { values })
}

fn read_value(r: &mut impl Read, kind: u32) -> Result<Option<Value>, GgufError> {
    Ok(Some(match kind {
        0 => Value::Int(i64::from(read_array::<1>(r)?[0])),
        1 => Value::Int(i64::from(read_array::<1>(r)?[0] as i8)),
        2 => Value::Int(i64::from(u16::from_le_bytes(read_array(r)?))),
        3 => Value::Int(i64::from(i16::from_le_bytes(read_array(r)?))),
        4 => Value::Int(i64::from(read_u32(r)?)),
        5 => Value::Int(i64::from(i32::from_le_bytes(read_array(r)?))),
        6 => Value::Float(f64::from(f32::from_le_bytes(read_array(r)?))),
        7 => Value::Bool(read_array::<1>(r)?[0] != 0),
        8 => Value::Str(read_string(r)?),
        9 => {
            let element = read_u32(r)?;
            let count = read_u64(r)?;
            if count > MAX_ARRAY || element == 9 {
                return Err(GgufError::Malformed("array too large or nested"));
            }
            for _ in 0..count {
                read_value(r, element)?;
            }
            return Ok(None);
        }
        10 => Value::Int(read_u64(r)? as i64),
        11 => Value::Int(i64::from_le_bytes(read_array(r)?)),
        12 => Value::Float(f64::from_le_bytes(read_array(r)?)),
        _ => return Err(GgufError::Malformed("unknown value type")),
    }))
}

fn read_array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    Ok(u32::from_le_bytes(read_array(r)?))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    Ok(u64::from_le_bytes(read_array(r)?))
}

fn read_string(r: &mut impl Read) -> Result<String, GgufError> {
    let len = read_u64(r)?;
    if len > MAX_STRING {
        return Err(GgufError::Malformed("string too long"));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    String::from_utf8(buf).map_err(|_| GgufError::Malformed("string is not UTF-8"))
}

/// The llama.cpp `LLAMA_FTYPE_*` name of a `general.file_type` value.
pub fn file_type_name(file_type: i64) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

/// The quantization named in a model file name (`...-Q4_K_M.gguf`), if any.
pub fn quantization_from_name(file_name: &str) -> Option<String> {
    let stem = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    stem.split(['-', '.'])
        .rev()
        .map(|token| token.to_ascii_uppercase())
        .find(|token| {
            let t = token.as_str();
            matches!(t, "F32" | "F16" | "BF16")
                || ((t.starts_with('Q') || t.starts_with("IQ") || t.starts_with("TQ"))
                    && t.len() >= 3
                    && t.len() <= 8
                    && t.chars()
                        .nth(if t.starts_with('Q') { 1 } else { 2 })
                        .is_some_and(|c| c.is_ascii_digit())
                    && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        })
}

/// A value to write with [`write()`].
#[derive(Debug, Clone)]
pub enum WriteValue<'a> {
    /// A `u32`.
    U32(u32),
    /// A string.
    Str(&'a str),
}

/// Writes a GGUF v3 file with these metadata pairs, no tensors, and
/// `padding` zero bytes after the header (to give the file a size).
pub fn write(path: &Path, pairs: &[(&str, WriteValue<'_>)], padding: u64) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(MAGIC)?;
    out.write_all(&3u32.to_le_bytes())?;
    out.write_all(&0u64.to_le_bytes())?;
    out.write_all(&(pairs.len() as u64).to_le_bytes())?;
    for (key, value) in pairs {
        out.write_all(&(key.len() as u64).to_le_bytes())?;
        out.write_all(key.as_bytes())?;
        match value {
            WriteValue::U32(v) => {
                out.write_all(&4u32.to_le_bytes())?;
                out.write_all(&v.to_le_bytes())?;
            }
            WriteValue::Str(s) => {
                out.write_all(&8u32.to_le_bytes())?;
                out.write_all(&(s.len() as u64).to_le_bytes())?;
                out.write_all(s.as_bytes())?;
            }
        }
    }
    io::copy(&mut io::repeat(0).take(padding), &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("mesh-llm-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.gguf");
        write(
            &path,
            &[
                ("general.architecture", WriteValue::Str("qwen3")),
                ("general.file_type", WriteValue::U32(15)),
            ],
            1000,
        )
        .unwrap();
        let meta = read(&path).unwrap();
        assert_eq!(meta.architecture(), Some("qwen3"));
        assert_eq!(meta.quantization(), Some("Q4_K_M"));
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn arrays_are_skipped_and_garbage_is_an_error() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"GGUF");
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        // tokenizer.ggml.tokens: array of 2 strings
        let key = b"tokenizer.ggml.tokens";
        bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(&9u32.to_le_bytes());
        bytes.extend_from_slice(&8u32.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        for token in [b"a".as_slice(), b"bc"] {
            bytes.extend_from_slice(&(token.len() as u64).to_le_bytes());
            bytes.extend_from_slice(token);
        }
        let key = b"general.architecture";
        bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(&8u32.to_le_bytes());
        bytes.extend_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(b"llama");
        let meta = read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(meta.architecture(), Some("llama"));
        assert_eq!(meta.values.len(), 1);

        assert!(matches!(
            read_from(&mut b"GGML....".as_slice()),
            Err(GgufError::BadMagic)
        ));
        assert!(read_from(&mut b"GGUF".as_slice()).is_err());
        let mut huge = b"GGUF".to_vec();
        huge.extend_from_slice(&3u32.to_le_bytes());
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            read_from(&mut huge.as_slice()),
            Err(GgufError::Malformed(_))
        ));
    }

    #[test]
    fn quantization_from_file_names() {
        let cases = [
            ("Qwen3-8B-Q4_K_M.gguf", Some("Q4_K_M")),
            ("gemma-3-4b-it-q8_0.gguf", Some("Q8_0")),
            ("/m/phi-4-IQ2_XS.gguf", Some("IQ2_XS")),
            ("llama-3.2-1b-f16.gguf", Some("F16")),
            ("model.gguf", None),
            ("Qwen3-8B.gguf", None),
        ];
        for (name, expected) in cases {
            assert_eq!(quantization_from_name(name).as_deref(), expected, "{name}");
        }
    }
}
