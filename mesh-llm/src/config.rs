//! The node's config file: `[[models]]`, `[[plugin]]` and `[telemetry]`.
//!
//! Found at `--config PATH`, else `$MESH_LLM_CONFIG`, else
//! `~/.mesh-llm/config.toml`; an absent default file means defaults. Unknown
//! keys and wrong types are errors that name the key and its line, and the
//! node does not start with a config it cannot read.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plugin::config::PluginEntry;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Models launched at startup.
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// Built-in plugin switches.
    #[serde(default)]
    pub plugin: Vec<PluginEntry>,
    /// Settings of the `survey` plugin.
    #[serde(default)]
    pub telemetry: survey::TelemetryConfig,
}

/// One `[[models]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Path of the GGUF file.
    pub model: String,
    /// Context size passed to the backend (`-c`); default: the model's own, else 4096.
    pub ctx_size: Option<u32>,
    /// Multimodal projector file (`--mmproj`).
    pub mmproj: Option<PathBuf>,
    /// Index of the GPU the backend should use (`--main-gpu`).
    pub gpu_id: Option<u32>,
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read, or an explicit path is missing.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid config; the message names the key and line.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, where, and what is expected.
        message: String,
    },
}

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config PATH` or `$MESH_LLM_CONFIG`: must exist.
    Explicit(PathBuf),
    /// `~/.mesh-llm/config.toml`: may be absent.
    Default(PathBuf),
    /// No home directory and nothing explicit: defaults.
    None,
}

impl ConfigSource {
    /// `--config` if given, else `MESH_LLM_CONFIG`, else the file in `home`.
    pub fn locate(
        flag: Option<PathBuf>,
        env: Option<String>,
        home: Option<PathBuf>,
    ) -> ConfigSource {
        if let Some(path) = flag {
            return ConfigSource::Explicit(path);
        }
        if let Some(path) = env.filter(|p| !p.trim().is_empty()) {
            return ConfigSource::Explicit(PathBuf::from(path));
        }
        match home {
            Some(home) => ConfigSource::Default(home.join(".mesh-llm").join("config.toml")),
            None => ConfigSource::None,
        }
    }

    /// The path, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Explicit(p) | ConfigSource::Default(p) => Some(p),
            ConfigSource::None => None,
        }
    }
}

impl NodeConfig {
    /// Loads and validates the config from `source`.
    pub fn load(source: &ConfigSource) -> Result<NodeConfig, ConfigError> {
        let (path, must_exist) = match source {
            ConfigSource::Explicit(p) => (p, true),
            ConfigSource::Default(p) => (p, false),
            ConfigSource::None => return Ok(NodeConfig::default()),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(NodeConfig::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.clone(),
                    source,
                });
            }
        };
        NodeConfig::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.clone(),
            message,
        })
    }

    /// Parses and validates config text; the error names the key and line.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let document = toml::Deserializer::parse(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!("at line {}: ", line(s.start)))
                .unwrap_or_default();
            format!("{at}{}", e.message().trim())
        })?;
        let config: NodeConfig = serde_path_to_error::deserialize(document).map_err(|e| {
            let at = e
                .inner()
                .span()
                .map(|s| format!("at line {}: ", line(s.start)))
                .unwrap_or_default();
            let path = e.path().to_string();
            let key = if path == "." {
                String::new()
            } else {
                format!("{path}: ")
            };
            format!("{at}{key}{}", e.inner().message().trim())
        })?;
        crate::plugin::config::validate(&config.plugin, text)?;
        for (i, entry) in config.models.iter().enumerate() {
            if entry.model.trim().is_empty() {
                return Err(format!(
                    "models[{i}].model: expected the path of a GGUF file"
                ));
            }
            if entry.ctx_size == Some(0) {
                return Err(format!(
                    "models[{i}].ctx_size: expected a context size greater than 0"
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_parses() {
        let config = NodeConfig::parse(
            r#"
[[models]]
model = "/models/Qwen3-8B-Q4_K_M.gguf"
ctx_size = 32768
gpu_id = 0

[[models]]
model = "/models/gemma-3-4b-it-Q4_0.gguf"
mmproj = "/models/mmproj-gemma.gguf"

[[plugin]]
name = "survey"
enabled = true

[telemetry]
enabled = true
service_name = "mesh-llm"
endpoint = "https://otel.example.com"
headers = { "authorization" = "Bearer TOKEN" }
export_interval_secs = 15
queue_size = 2048
prompt_shape_metrics = false

[telemetry.metrics]
endpoint = "https://otel.example.com/v1/metrics"
"#,
        )
        .unwrap();
        assert_eq!(config.models.len(), 2);
        assert_eq!(config.models[0].ctx_size, Some(32768));
        assert_eq!(config.plugin.len(), 1);
        assert_eq!(config.telemetry.queue_size, Some(2048));
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let cases = [
            (
                "[[models]]\nmodel = \"a.gguf\"\nctx = 4096\n",
                ["line 3", "ctx"],
            ),
            (
                "[[models]]\nmodel = \"a.gguf\"\nctx_size = \"big\"\n",
                ["line 3", "ctx_size"],
            ),
            (
                "[telemetry]\nendpont = \"http://x\"\n",
                ["line 2", "endpont"],
            ),
            ("[telemetry]\nqueue_size = -1\n", ["line 2", "queue_size"]),
            ("[[plugin]]\nname = \"surveyy\"\n", ["line 2", "surveyy"]),
            (
                "[[plugin]]\nname = \"survey\"\nenabled = \"yes\"\n",
                ["line 3", "enabled"],
            ),
            ("[nodes]\n", ["line 1", "nodes"]),
            (
                "[[plugin]]\nname = \"survey\"\n[[plugin]]\nname = \"survey\"\n",
                ["line 4", "more than once"],
            ),
            (
                "[[models]]\nmodel = \"a.gguf\"\nctx_size = 0\n",
                ["models[0].ctx_size", "greater than 0"],
            ),
        ];
        for (text, needles) in cases {
            let error = NodeConfig::parse(text).unwrap_err();
            for needle in needles {
                assert!(
                    error.contains(needle),
                    "{text:?}: {error:?} lacks {needle:?}"
                );
            }
            assert!(!error.contains('\n'), "{error:?}");
        }
    }

    #[test]
    fn config_is_located_by_flag_then_env_then_home() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            ConfigSource::locate(Some("/a.toml".into()), Some("/b.toml".into()), home.clone()),
            ConfigSource::Explicit("/a.toml".into())
        );
        assert_eq!(
            ConfigSource::locate(None, Some("/b.toml".into()), home.clone()),
            ConfigSource::Explicit("/b.toml".into())
        );
        assert_eq!(
            ConfigSource::locate(None, None, home),
            ConfigSource::Default("/home/u/.mesh-llm/config.toml".into())
        );
        assert_eq!(ConfigSource::locate(None, None, None), ConfigSource::None);
        // An absent default file is the default config; an absent explicit one is an error.
        let missing = PathBuf::from("/nonexistent/mesh-llm/config.toml");
        assert!(NodeConfig::load(&ConfigSource::Default(missing.clone())).is_ok());
        assert!(matches!(
            NodeConfig::load(&ConfigSource::Explicit(missing)),
            Err(ConfigError::Read { .. })
        ));
    }
}
