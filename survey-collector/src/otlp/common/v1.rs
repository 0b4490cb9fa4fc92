//! `opentelemetry.proto.common.v1`: attribute values, key-value pairs and
//! the instrumentation scope.

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::otlp::json;

/// A value of an attribute: a scalar, an array, a key-value list or bytes.
///
/// OTLP/JSON writes the set member as the only key: `{"stringValue": "x"}`,
/// `{"intValue": "3"}`; an object without one is an empty value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value; `None` for an empty value.
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub value: Option<any_value::Value>,
}

/// The members of [`AnyValue`].
pub mod any_value {
    /// The kinds of value an [`AnyValue`](super::AnyValue) holds.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `stringValue`.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// `boolValue`.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// `intValue`: a string in OTLP/JSON.
        #[prost(int64, tag = "3")]
        IntValue(i64),
        /// `doubleValue`.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// `arrayValue`.
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        /// `kvlistValue`.
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        /// `bytesValue`: base64 in OTLP/JSON.
        #[prost(bytes, tag = "7")]
        BytesValue(Vec<u8>),
        /// `stringValueStrindex`: an index into a dictionary of strings.
        #[prost(int32, tag = "8")]
        StringValueStrindex(i32),
    }
}

/// The OTLP/JSON members of [`AnyValue`], read before one is chosen.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AnyValueJson {
    string_value: Option<String>,
    bool_value: Option<bool>,
    #[serde(deserialize_with = "json::opt_i64")]
    int_value: Option<i64>,
    #[serde(with = "json::opt_f64")]
    double_value: Option<f64>,
    array_value: Option<ArrayValue>,
    kvlist_value: Option<KeyValueList>,
    bytes_value: Option<String>,
    string_value_strindex: Option<i32>,
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use any_value::Value as V;
        let j = AnyValueJson::deserialize(d)?;
        let bytes = match j.bytes_value {
            Some(text) => Some(
                json::base64_decode(&text)
                    .ok_or_else(|| de::Error::custom("bytesValue is not base64"))?,
            ),
            None => None,
        };
        let members = [
            j.string_value.map(V::StringValue),
            j.bool_value.map(V::BoolValue),
            j.int_value.map(V::IntValue),
            j.double_value.map(V::DoubleValue),
            j.array_value.map(V::ArrayValue),
            j.kvlist_value.map(V::KvlistValue),
            bytes.map(V::BytesValue),
            j.string_value_strindex.map(V::StringValueStrindex),
        ];
        Ok(AnyValue {
            value: only_one(members, "AnyValue")?,
        })
    }
}

impl Serialize for AnyValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use any_value::Value as V;
        let mut map = s.serialize_map(Some(usize::from(self.value.is_some())))?;
        match &self.value {
            None => {}
            Some(V::StringValue(v)) => map.serialize_entry("stringValue", v)?,
            Some(V::BoolValue(v)) => map.serialize_entry("boolValue", v)?,
            Some(V::IntValue(v)) => map.serialize_entry("intValue", &v.to_string())?,
            Some(V::DoubleValue(v)) => map.serialize_entry("doubleValue", &json::Double(*v))?,
            Some(V::ArrayValue(v)) => map.serialize_entry("arrayValue", v)?,
            Some(V::KvlistValue(v)) => map.serialize_entry("kvlistValue", v)?,
            Some(V::BytesValue(v)) => {
                map.serialize_entry("bytesValue", &json::base64_encode(v))?;
            }
            Some(V::StringValueStrindex(v)) => map.serialize_entry("stringValueStrindex", v)?,
        }
        map.end()
    }
}

/// The one member of a oneof present in OTLP/JSON, if any; more than one
/// is an error.
pub(crate) fn only_one<T, E: de::Error, const N: usize>(
    members: [Option<T>; N],
    message: &str,
) -> Result<Option<T>, E> {
    let mut set = members.into_iter().flatten();
    let first = set.next();
    if set.next().is_some() {
        return Err(E::custom(format_args!(
            "more than one value of a oneof in {message}"
        )));
    }
    Ok(first)
}

/// A list of values: `arrayValue`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ArrayValue {
    /// The values, in order.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// A list of key-value pairs: `kvlistValue`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyValueList {
    /// The pairs, in order.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// An attribute: a key and its value.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyValue {
    /// The attribute key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The attribute value.
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<AnyValue>,
    /// The key as an index into a dictionary of strings.
    #[prost(int32, tag = "3")]
    #[serde(skip_serializing_if = "is_zero")]
    pub key_strindex: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// The instrumentation scope of a set of metrics: the library that made
/// them.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InstrumentationScope {
    /// The scope's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The scope's version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// Attributes of the scope.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Attributes the sender dropped.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// A reference from a resource to an entity it describes.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EntityRef {
    /// The schema URL of the entity.
    #[prost(string, tag = "1")]
    pub schema_url: String,
    /// The entity's type.
    #[prost(string, tag = "2")]
    pub r#type: String,
    /// Resource attribute keys that identify the entity.
    #[prost(string, repeated, tag = "3")]
    pub id_keys: Vec<String>,
    /// Resource attribute keys that describe the entity.
    #[prost(string, repeated, tag = "4")]
    pub description_keys: Vec<String>,
}
