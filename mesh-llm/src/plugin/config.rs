//! `[[plugin]]` entries: which built-in plugins are switched on or off.

use serde::Deserialize;

use super::BuiltinPlugin;

/// One `[[plugin]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// A built-in plugin name.
    pub name: toml::Spanned<String>,
    /// Whether it runs (default `true`).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_enabled() -> bool {
    true
}

/// Checks names against the built-in plugins and rejects duplicates;
/// `text` is the config source, for line numbers.
pub fn validate(entries: &[PluginEntry], text: &str) -> Result<(), String> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut seen: Vec<&str> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let name = entry.name.get_ref().as_str();
        let at = line(entry.name.span().start);
        if BuiltinPlugin::from_name(name).is_none() {
            return Err(format!(
                "at line {at}: plugin[{i}].name: unknown plugin \"{}\"; built-in plugins: {}",
                name.chars().take(64).collect::<String>(),
                BuiltinPlugin::names().join(", ")
            ));
        }
        if seen.contains(&name) {
            return Err(format!(
                "at line {at}: plugin[{i}].name: plugin \"{name}\" is listed more than once"
            ));
        }
        seen.push(name);
    }
    Ok(())
}
