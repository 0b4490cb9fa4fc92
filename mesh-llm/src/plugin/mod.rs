//! Built-in plugins and their registration.
//!
//! `survey` is the one built-in plugin: switched by `[[plugin]] name =
//! "survey"`, configured by `[telemetry]`. Starting it never fails: a
//! telemetry problem disables survey with a warning and the node runs on.

pub mod config;

use self::config::PluginEntry;

/// The plugins built into the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinPlugin {
    /// Crowd-sourced model lifecycle metrics over OTLP/HTTP.
    Survey,
}

impl BuiltinPlugin {
    const ALL: [(BuiltinPlugin, &'static str); 1] = [(BuiltinPlugin::Survey, "survey")];

    /// The plugin called `name`.
    pub fn from_name(name: &str) -> Option<BuiltinPlugin> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(p, _)| *p)
    }

    /// Every built-in plugin name.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(_, n)| *n).collect()
    }
}

/// The switches of the built-in plugins, from `[[plugin]]` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plugins {
    survey: Option<bool>,
}

impl Plugins {
    /// Registers the entries (already validated with the config).
    pub fn from_entries(entries: &[PluginEntry]) -> Plugins {
        let mut plugins = Plugins::default();
        for entry in entries {
            match BuiltinPlugin::from_name(entry.name.get_ref()) {
                Some(BuiltinPlugin::Survey) => plugins.survey = Some(entry.enabled),
                None => {}
            }
        }
        plugins
    }

    /// Starts the survey plugin with the `[telemetry]` settings.
    pub fn start_survey(&self, telemetry: &survey::TelemetryConfig) -> survey::SurveyGuard {
        survey::Setup::new(telemetry)
            .plugin_enabled(self.survey)
            .service_version(env!("CARGO_PKG_VERSION"))
            .start()
    }
}
