//! What a host tells survey about a model: [`SurveyModel`] and [`ModelFacts`].

/// Identity of one loaded model instance.
///
/// The launch, unload and exit of the same instance must produce the same key,
/// so that survey can find the instance in its loaded-model registry (for
/// uptime and the gauges). It is never exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey(u64);

impl InstanceKey {
    /// A key from a number the host already has (a slot, a port, a counter).
    pub const fn from_u64(value: u64) -> InstanceKey {
        InstanceKey(value)
    }

    /// A key from a name the host already has (a model name, a path).
    pub fn from_name(name: &str) -> InstanceKey {
        // FNV-1a: stable across runs and platforms, unlike `DefaultHasher`.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        InstanceKey(hash)
    }

    /// The key as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for InstanceKey {
    fn from(value: u64) -> Self {
        InstanceKey(value)
    }
}

impl From<&str> for InstanceKey {
    fn from(name: &str) -> Self {
        InstanceKey::from_name(name)
    }
}

/// Where a model runs, when the host knows better than the node-wide probe.
///
/// Every field left `None` is taken from the probed [`HardwareFacts`](crate::HardwareFacts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    /// Device family (`cuda`, `rocm`, `metal`, `vulkan`, `cpu`).
    pub backend_device: Option<String>,
    /// Index of the probed GPU the model runs on; its name and stable id are used.
    pub gpu_index: Option<usize>,
    /// GPU name, overriding the probed one.
    pub gpu_name: Option<String>,
    /// Raw high-entropy GPU id (UUID), hashed before export.
    pub gpu_uuid: Option<String>,
}

/// Raw facts about one model instance, as the host knows them.
///
/// Nothing here is exported as given: every string passes a
/// [`privacy`](crate::privacy) sanitizer first, off the caller's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    pub(crate) instance: InstanceKey,
    pub(crate) model: String,
    /// `model` is a local path or URL: export only its file stem.
    pub(crate) model_is_file: bool,
    pub(crate) architecture: Option<String>,
    pub(crate) quantization: Option<String>,
    pub(crate) context_length: Option<u64>,
    pub(crate) backend: Option<String>,
    pub(crate) device: DeviceFacts,
}

impl ModelFacts {
    /// Facts for `instance` of `model`: a canonical ref (`org/repo:Q4_K_M`), a
    /// catalog name, or a local path or URL (reduced to the file stem).
    pub fn new(instance: impl Into<InstanceKey>, model: impl Into<String>) -> ModelFacts {
        ModelFacts {
            instance: instance.into(),
            model: model.into(),
            model_is_file: false,
            architecture: None,
            quantization: None,
            context_length: None,
            backend: None,
            device: DeviceFacts::default(),
        }
    }

    /// Facts for `instance` of the model in the local file (or at the URL)
    /// `path`: only the file stem is exported, whatever the path looks like.
    pub fn local_file(instance: impl Into<InstanceKey>, path: impl Into<String>) -> ModelFacts {
        ModelFacts {
            model_is_file: true,
            ..ModelFacts::new(instance, path)
        }
    }

    /// Architecture (`llama`, `qwen3`), e.g. from GGUF `general.architecture`.
    pub fn architecture(mut self, architecture: impl Into<String>) -> Self {
        self.architecture = Some(architecture.into());
        self
    }

    /// Quantization (`Q4_K_M`), e.g. from GGUF `general.file_type`.
    pub fn quantization(mut self, quantization: impl Into<String>) -> Self {
        self.quantization = Some(quantization.into());
        self
    }

    /// The context length passed to the backend, in tokens.
    pub fn context_length(mut self, tokens: u64) -> Self {
        self.context_length = Some(tokens);
        self
    }

    /// The inference backend (`llama.cpp`).
    pub fn backend(mut self, backend: impl Into<String>) -> Self {
        self.backend = Some(backend.into());
        self
    }

    /// The device the model runs on, when the host chose one.
    pub fn device(mut self, device: DeviceFacts) -> Self {
        self.device = device;
        self
    }

    /// The instance key.
    pub fn instance(&self) -> InstanceKey {
        self.instance
    }
}

/// Implemented by whatever a host passes as `model = ...` to the survey macros:
/// a launch spec, a running-model handle, a config entry.
///
/// Survey calls it once at the start of an instrumented call, and only when
/// survey is enabled.
///
/// ```
/// use survey_runtime::{ModelFacts, SurveyModel};
///
/// struct Spec { name: String, ctx: u64 }
///
/// impl SurveyModel for Spec {
///     fn survey_facts(&self) -> ModelFacts {
///         ModelFacts::new(self.name.as_str(), &self.name)
///             .context_length(self.ctx)
///             .backend("llama.cpp")
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `survey::SurveyModel`",
    label = "`model = ...` must name a value whose type implements `survey::SurveyModel`",
    note = "implement `survey::SurveyModel` for it, returning `survey::ModelFacts`"
)]
pub trait SurveyModel {
    /// The facts of this model instance.
    fn survey_facts(&self) -> ModelFacts;

    /// The instance key alone. Unloads and exits of models survey saw launch
    /// need only this; override it when building the full facts costs more.
    fn instance_key(&self) -> InstanceKey {
        self.survey_facts().instance()
    }
}

impl SurveyModel for ModelFacts {
    fn survey_facts(&self) -> ModelFacts {
        self.clone()
    }

    fn instance_key(&self) -> InstanceKey {
        self.instance
    }
}

impl<T: SurveyModel + ?Sized> SurveyModel for &T {
    fn survey_facts(&self) -> ModelFacts {
        (**self).survey_facts()
    }

    fn instance_key(&self) -> InstanceKey {
        (**self).instance_key()
    }
}

impl<T: SurveyModel + ?Sized> SurveyModel for &mut T {
    fn survey_facts(&self) -> ModelFacts {
        (**self).survey_facts()
    }

    fn instance_key(&self) -> InstanceKey {
        (**self).instance_key()
    }
}

impl<T: SurveyModel + ?Sized> SurveyModel for Box<T> {
    fn survey_facts(&self) -> ModelFacts {
        (**self).survey_facts()
    }

    fn instance_key(&self) -> InstanceKey {
        (**self).instance_key()
    }
}

impl<T: SurveyModel + ?Sized> SurveyModel for std::sync::Arc<T> {
    fn survey_facts(&self) -> ModelFacts {
        (**self).survey_facts()
    }

    fn instance_key(&self) -> InstanceKey {
        (**self).instance_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_are_stable() {
        assert_eq!(InstanceKey::from_name("a"), InstanceKey::from("a"));
        assert_ne!(InstanceKey::from_name("a"), InstanceKey::from_name("b"));
        // FNV-1a of the empty string is its offset basis.
        assert_eq!(InstanceKey::from_name("").as_u64(), 0xcbf2_9ce4_8422_2325);
    }
}
