//! `opentelemetry.proto.resource.v1`: the entity that produced the
//! metrics.

use serde::{Deserialize, Serialize};

use crate::otlp::common::v1::{EntityRef, KeyValue};

/// The resource of a set of metrics: who produced them.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resource {
    /// The resource's attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Attributes the sender dropped.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
    /// The entities the resource describes.
    #[prost(message, repeated, tag = "3")]
    pub entity_refs: Vec<EntityRef>,
}
