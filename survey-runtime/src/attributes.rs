//! The one place where the attribute sets of data points are built: keys
//! only from [`AttributeKey`], string values only from the sanitizers'
//! [`SafeValue`]s, always in key order.

use opentelemetry::{KeyValue, Value};
use survey_schema::privacy::{self, SafeValue};
use survey_schema::{AttributeKey, ContextBucket, FailureKind, LaunchKind, RequestOutcome};

use crate::hardware::DeviceView;
use crate::model::ModelFacts;

/// A value an attribute may carry: closed enums, sanitized strings, numbers
/// and booleans. Raw strings cannot be turned into one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttributeValue {
    Static(&'static str),
    Safe(SafeValue),
    Int(i64),
    Bool(bool),
}

impl From<AttributeValue> for Value {
    fn from(value: AttributeValue) -> Value {
        match value {
            AttributeValue::Static(s) => Value::from(s),
            AttributeValue::Safe(s) => Value::from(s.into_string()),
            AttributeValue::Int(i) => Value::I64(i),
            AttributeValue::Bool(b) => Value::Bool(b),
        }
    }
}

/// Builds the attribute list of one data point, always in [`AttributeKey`]
/// order (the SDK takes its fast path when the order never changes).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct AttributeSet {
    entries: Vec<(AttributeKey, AttributeValue)>,
}

impl AttributeSet {
    pub(crate) fn with_capacity(n: usize) -> Self {
        AttributeSet {
            entries: Vec::with_capacity(n),
        }
    }

    /// Sets `key`, replacing an earlier value of the same key.
    pub(crate) fn set(&mut self, key: AttributeKey, value: AttributeValue) {
        match self.entries.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    /// Sets `key` when `value` is present.
    pub(crate) fn set_opt(&mut self, key: AttributeKey, value: Option<AttributeValue>) {
        if let Some(value) = value {
            self.set(key, value);
        }
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = AttributeKey> + '_ {
        self.entries.iter().map(|(k, _)| *k)
    }

    /// The OpenTelemetry attribute list.
    pub(crate) fn to_key_values(&self) -> Vec<KeyValue> {
        self.entries
            .iter()
            .map(|(k, v)| KeyValue::new(k.as_str(), Value::from(v.clone())))
            .collect()
    }
}

/// The attributes of a data point about one model: model, hardware and
/// runtime facts, plus the launch kind and failure reason when known.
pub(crate) fn model_attributes(
    facts: &ModelFacts,
    device: &DeviceView,
    kind: Option<LaunchKind>,
    failure: Option<FailureKind>,
    service_version: Option<&SafeValue>,
) -> AttributeSet {
    let safe = |v: Option<SafeValue>| v.map(AttributeValue::Safe);
    let mut set = AttributeSet::with_capacity(AttributeKey::ALL.len());
    let model = if facts.model_is_file {
        privacy::model_file(&facts.model)
    } else {
        privacy::model_id(&facts.model)
    };
    set.set_opt(AttributeKey::Model, safe(model));
    set.set_opt(
        AttributeKey::Architecture,
        safe(
            facts
                .architecture
                .as_deref()
                .and_then(privacy::architecture),
        ),
    );
    set.set_opt(
        AttributeKey::Quantization,
        safe(
            facts
                .quantization
                .as_deref()
                .and_then(privacy::quantization),
        ),
    );
    set.set_opt(
        AttributeKey::LaunchKind,
        kind.map(|k| AttributeValue::Static(k.as_str())),
    );
    add_device(&mut set, device);
    set.set_opt(
        AttributeKey::Backend,
        safe(facts.backend.as_deref().and_then(privacy::backend)),
    );
    set.set_opt(
        AttributeKey::ContextBucket,
        facts
            .context_length
            .map(|n| AttributeValue::Static(ContextBucket::of(n).as_str())),
    );
    set.set_opt(AttributeKey::ServiceVersion, safe(service_version.cloned()));
    set.set_opt(
        AttributeKey::FailureReason,
        failure.map(|f| AttributeValue::Static(f.as_str())),
    );
    set
}

/// The attributes of an inference data point about a loaded instance: its
/// model, hardware and context bucket as at its launch, without the launch
/// kind; with `outcome` on the request counter only.
pub(crate) fn inference_attributes(
    facts: &ModelFacts,
    device: &DeviceView,
    outcome: Option<RequestOutcome>,
    service_version: Option<&SafeValue>,
) -> AttributeSet {
    let mut set = model_attributes(facts, device, None, None, service_version);
    set.set_opt(
        AttributeKey::RequestOutcome,
        outcome.map(|o| AttributeValue::Static(o.as_str())),
    );
    set
}

/// The attributes of a node-wide data point: hardware and version only.
pub(crate) fn node_attributes(
    device: &DeviceView,
    service_version: Option<&SafeValue>,
) -> AttributeSet {
    let mut set = AttributeSet::with_capacity(6);
    add_device(&mut set, device);
    set.set_opt(
        AttributeKey::ServiceVersion,
        service_version.cloned().map(AttributeValue::Safe),
    );
    set
}

fn add_device(set: &mut AttributeSet, device: &DeviceView) {
    set.set_opt(
        AttributeKey::GpuName,
        device.gpu_name.clone().map(AttributeValue::Safe),
    );
    set.set_opt(
        AttributeKey::GpuStableId,
        device.gpu_stable_id.clone().map(AttributeValue::Safe),
    );
    set.set_opt(
        AttributeKey::BackendDevice,
        device.backend_device.clone().map(AttributeValue::Safe),
    );
    set.set(
        AttributeKey::GpuCount,
        AttributeValue::Int(device.gpu_count),
    );
    set.set(AttributeKey::IsSoc, AttributeValue::Bool(device.is_soc));
}

#[cfg(test)]
mod tests {
    use super::*;
    use survey_schema::ReceivedValue;

    fn received(value: &AttributeValue) -> ReceivedValue<'_> {
        match value {
            AttributeValue::Static(s) => ReceivedValue::Str(s),
            AttributeValue::Safe(s) => ReceivedValue::Str(s.as_str()),
            AttributeValue::Int(i) => ReceivedValue::Int(*i),
            AttributeValue::Bool(b) => ReceivedValue::Bool(*b),
        }
    }

    proptest::proptest! {
        /// Whatever raw facts a host passes, a collector that checks with
        /// `accepts` takes every attribute survey builds from them.
        #[test]
        fn collectors_accept_every_exported_attribute(
            model in proptest::prelude::any::<String>(),
            is_file in proptest::prelude::any::<bool>(),
            text in proptest::collection::vec(proptest::prelude::any::<String>(), 5),
            ctx in proptest::prelude::any::<u64>(),
            uuid in "(GPU-)?[0-9a-fA-F-]{20,40}",
            gpus in 0usize..4,
            is_soc in proptest::prelude::any::<bool>(),
        ) {
            let facts = if is_file {
                ModelFacts::local_file(1, model)
            } else {
                ModelFacts::new(1, model)
            }
            .architecture(text[0].clone())
            .quantization(text[1].clone())
            .backend(text[2].clone())
            .context_length(ctx);
            let node = crate::HardwareFacts {
                backend_device: text[3].clone(),
                gpus: (0..gpus)
                    .map(|_| crate::GpuInfo { name: text[4].clone(), uuid: Some(uuid.clone()) })
                    .collect(),
                is_soc,
            };
            let version = privacy::service_version(&text[0]);
            for device in [
                DeviceView::node(&node),
                DeviceView::resolve(&node, &crate::DeviceFacts::default()),
            ] {
                for failure in [None, Some(FailureKind::Other)] {
                    let set = model_attributes(
                        &facts,
                        &device,
                        Some(LaunchKind::MoeShard),
                        failure,
                        version.as_ref(),
                    );
                    for (key, value) in &set.entries {
                        proptest::prop_assert!(
                            key.accepts(received(value)),
                            "{key} = {value:?} refused"
                        );
                    }
                }
                for outcome in [None, Some(RequestOutcome::ClientCancelled)] {
                    let set = inference_attributes(&facts, &device, outcome, version.as_ref());
                    proptest::prop_assert_eq!(
                        set.entries.iter().any(|(k, _)| *k == AttributeKey::RequestOutcome),
                        outcome.is_some()
                    );
                    for (key, value) in &set.entries {
                        proptest::prop_assert!(key.accepts(received(value)), "{key} = {value:?}");
                    }
                }
                let set = node_attributes(&device, version.as_ref());
                for (key, value) in &set.entries {
                    proptest::prop_assert!(key.accepts(received(value)), "{key} = {value:?}");
                }
            }
        }
    }

    #[test]
    fn attribute_sets_keep_schema_order_and_replace_duplicates() {
        let mut set = AttributeSet::default();
        set.set(AttributeKey::FailureReason, AttributeValue::Static("other"));
        set.set(AttributeKey::Model, AttributeValue::Static("a"));
        set.set(AttributeKey::GpuCount, AttributeValue::Int(2));
        set.set(AttributeKey::Model, AttributeValue::Static("b"));
        let keys: Vec<_> = set.keys().collect();
        assert_eq!(
            keys,
            [
                AttributeKey::Model,
                AttributeKey::GpuCount,
                AttributeKey::FailureReason
            ]
        );
        let kvs = set.to_key_values();
        assert_eq!(kvs[0], KeyValue::new("mesh_llm.model", "b"));
    }

    /// The sets built here fit the keys the schema says each metric
    /// carries ([`MetricKeys`](survey_schema::MetricKeys)), which is what a
    /// collector checks: a key added here and not there fails this test.
    #[test]
    fn every_set_fits_its_metrics_keys() {
        use survey_schema::{MetricKeys, metrics};

        let facts = ModelFacts::new(1, "Qwen/Qwen3-8B-GGUF")
            .architecture("qwen3")
            .quantization("Q4_K_M")
            .backend("llama.cpp")
            .context_length(40_960);
        let node = crate::HardwareFacts {
            backend_device: "cuda".into(),
            gpus: vec![crate::GpuInfo {
                name: "NVIDIA GeForce RTX 4090".into(),
                uuid: Some("GPU-6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b".into()),
            }],
            is_soc: false,
        };
        // As the recorder sees them: a model on its GPU, the node as a whole.
        let device = DeviceView::resolve(&node, &crate::DeviceFacts::default());
        let whole_node = DeviceView::node(&node);
        let version = privacy::service_version("0.1.0");
        let version = version.as_ref();
        let keys = |name| MetricKeys::of_metric(survey_schema::metric(name).expect("a metric"));
        let fits =
            |name, set: &AttributeSet| keys(name).admits(set.entries.iter().map(|(k, _)| *k));

        let launched = model_attributes(&facts, &device, Some(LaunchKind::Startup), None, version);
        let failed = model_attributes(
            &facts,
            &device,
            Some(LaunchKind::Startup),
            Some(FailureKind::HealthTimeout),
            version,
        );
        let served = inference_attributes(&facts, &device, None, version);
        let answered = inference_attributes(&facts, &device, Some(RequestOutcome::Ok), version);
        let node_wide = node_attributes(&whole_node, version);
        // Every key of the full sets is there, so the checks below are not
        // passed by missing keys.
        assert_eq!(failed.entries.len(), AttributeKey::ALL.len() - 1);
        assert_eq!(answered.entries.len(), AttributeKey::ALL.len() - 2);

        for spec in metrics::METRICS {
            let name = spec.name;
            let expected = match name {
                metrics::LOADED_MODELS => &node_wide,
                metrics::INFERENCE_REQUESTS_TOTAL => &answered,
                _ if spec.prompt_shape => &served,
                metrics::LAUNCH_FAILURE_TOTAL | metrics::LAUNCH_DURATION_MS => &failed,
                _ => &launched,
            };
            assert!(fits(name, expected), "{name}: {:?}", expected.entries);
        }
        // And the sets of other metrics do not fit where they do not belong.
        assert!(!fits(metrics::LAUNCH_TOTAL, &failed));
        assert!(!fits(metrics::LOADED_MODELS, &launched));
        assert!(!fits(metrics::INFERENCE_REQUESTS_TOTAL, &served));
        assert!(!fits(metrics::INFERENCE_OUTPUT_TOKENS, &answered));
    }
}
