//! Sanitizers for every string that can become an attribute value.
//!
//! Each function takes raw text from the host (a model path, a GPU name, a
//! version) and returns a [`SafeValue`], bounded in length and restricted to
//! a small character set, or `None`. What else happens depends on the
//! value:
//!
//! - a model path or URL is reduced to the last non-empty segment (between
//!   `/` or `\`) of what precedes its query string and fragment, and of that
//!   to what follows its last `@` or `:` ([`model_id`], [`model_file`]):
//!   directories go, and so do a URL's scheme, user info, host and port;
//! - a URL (text holding `://`) or network path (starting with two of `/`
//!   and `\`) with no non-empty segment after its host, before its query
//!   string and fragment, is refused whole: a host is never exported;
//! - a token, GPU name or version holding a path separator, `@`, `?` or `=`
//!   is refused whole ([`architecture`], [`gpu_name`], [`service_version`],
//!   ...);
//! - a GPU id is replaced by a hash ([`gpu_stable_id`]);
//! - in every text kept, each run of characters outside the set becomes
//!   one `-`.
//!
//! A `SafeValue` can only be made here, and the schema only accepts
//! `SafeValue`s for string attributes, so nothing reaches an exported
//! attribute without passing through this module.

use sha2::{Digest, Sha256};

/// Longest exported model identifier, in characters.
pub const MAX_MODEL_LEN: usize = 96;
/// Longest exported value of any other string attribute, in characters.
pub const MAX_VALUE_LEN: usize = 64;

/// A string that passed a sanitizer and may be exported as an attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafeValue(String);

impl SafeValue {
    /// The sanitized text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sanitized text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for SafeValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sanitizer: raw text in, an exportable value or nothing out.
pub(crate) type Sanitizer = fn(&str) -> Option<SafeValue>;

/// Whether `value` is what `sanitize` exports for it: every sanitizer but
/// [`gpu_stable_id`] (whose output is a hash; see [`is_gpu_stable_id`])
/// returns its own output unchanged, so for those this holds exactly for
/// values survey can export.
pub(crate) fn is_sanitized(sanitize: Sanitizer, value: &str) -> bool {
    sanitize(value).is_some_and(|v| v.as_str() == value)
}

/// First path segments that mark a relative path rather than an `org/repo` ref.
const DIRECTORY_WORDS: &[&str] = &[
    "home",
    "users",
    "user",
    "root",
    "tmp",
    "temp",
    "mnt",
    "media",
    "var",
    "opt",
    "srv",
    "data",
    "models",
    "model",
    "downloads",
    "library",
    "cache",
    "documents",
    "desktop",
    "private",
];

/// Characters that mark a path, URL, user name or query string: a token, GPU
/// name or version holding any of them is refused whole.
const REFUSED_CHARS: [char; 5] = ['/', '\\', '@', '?', '='];

/// File extensions removed from model file names.
const MODEL_EXTENSIONS: &[&str] = &[".gguf", ".ggml", ".bin", ".safetensors", ".llamafile"];

/// Normalizes a model identifier.
///
/// - A canonical ref (`org/repo` or `org/repo:Q4_K_M`, see below) is kept
///   as it is, trimmed of surrounding whitespace.
/// - Anything else is read as a path or URL, as by [`model_file`]: the query
///   string and fragment are cut off, then only the last non-empty segment
///   (between `/` or `\`) is kept, and of that only what follows its last
///   `@` or `:`, without extensions or split suffixes (`-00001-of-00003`);
///   each run of other characters than letters, digits and `._-` becomes
///   one `-`, and the result is cut to [`MAX_MODEL_LEN`] characters.
///   `/home/alice/models/Qwen3-8B-Q4_K_M.gguf` becomes `Qwen3-8B-Q4_K_M`.
/// - A URL or network path with nothing after its host is refused, never
///   reduced to its host: `https://user:pw@host.example`, `https://hf.co/`
///   and `\\fileserver` give `None`.
///
/// A canonical ref is `org/repo` with an optional `:TAG`, each part made of
/// letters, digits and `._-` and starting with a letter or digit, with no
/// `://`, an `org` that is not a directory word (`home`, `models`, ...) and a
/// `repo` without a model-file extension.
///
/// Returns `None` when nothing exportable is left.
pub fn model_id(raw: &str) -> Option<SafeValue> {
    canonical_ref(raw.trim()).or_else(|| model_file(raw))
}

/// Normalizes a model that the host knows is a local file or URL, as
/// [`model_id`] does anything that is not a canonical ref: only its file
/// stem is kept, never an `org/repo` reading of a relative path
/// (`alice/mymodel` becomes `mymodel`). A URL or network path with no
/// non-empty segment after its host is refused.
pub fn model_file(raw: &str) -> Option<SafeValue> {
    // One pass can leave a name that another pass shortens (`a.bin.gguf`
    // becomes `a.bin`, then `a`): repeat to a fixed point, so that an exported
    // value is its own sanitized form and a collector can check it. After
    // the first pass every change shortens the name, so this ends.
    let mut value = file_stem(raw)?;
    loop {
        let next = file_stem(&value)?;
        if next == value {
            return Some(SafeValue(value));
        }
        value = next;
    }
}

/// One pass of [`model_file`].
fn file_stem(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // Cut off query string and fragment, then the scheme, user info and
    // host, then keep the last path segment.
    let without_query = raw.split(['?', '#']).next().unwrap_or_default();
    let last = after_host(without_query)?
        .rsplit(['/', '\\'])
        .find(|segment| !segment.is_empty())
        .unwrap_or_default();
    // A segment like `user@host:file` or `C:file` keeps only what follows `@`/`:`.
    let last = last.rsplit(['@', ':']).next().unwrap_or_default();
    let stem = strip_split_suffix(strip_model_extension(last));
    restrict(stem, MAX_MODEL_LEN, is_name_char)
}

/// What follows the host of a URL (`scheme://user@host:port/path`) or
/// network path (`//host/path`, `\\host\share`): its path, or `None`
/// when the path has no non-empty segment, so that the host is never taken
/// for a file name. Any other text is returned whole.
fn after_host(text: &str) -> Option<&str> {
    let rest = if let Some((_, rest)) = text.split_once("://") {
        rest
    } else if let Some(rest) = text
        .strip_prefix(['/', '\\'])
        .and_then(|t| t.strip_prefix(['/', '\\']))
    {
        rest
    } else {
        return Some(text);
    };
    let path = rest.find(['/', '\\']).map_or("", |start| &rest[start..]);
    path.split(['/', '\\'])
        .any(|segment| !segment.is_empty())
        .then_some(path)
}

/// `org/repo` or `org/repo:TAG`, with no scheme, no leading directory word,
/// no model-file extension on `repo`, and nothing outside the name
/// character set; each part starts with a letter or digit.
fn canonical_ref(raw: &str) -> Option<SafeValue> {
    if raw.len() > MAX_MODEL_LEN || raw.contains("://") {
        return None;
    }
    let (path, tag) = match raw.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (raw, None),
    };
    let (org, repo) = path.split_once('/')?;
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.chars().all(is_name_char)
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
    };
    if !segment_ok(org) || !segment_ok(repo) || tag.is_some_and(|t| !segment_ok(t)) {
        return None;
    }
    if DIRECTORY_WORDS.contains(&org.to_ascii_lowercase().as_str()) {
        return None;
    }
    let lower = repo.to_ascii_lowercase();
    if MODEL_EXTENSIONS.iter().any(|ext| lower.ends_with(ext)) {
        return None;
    }
    Some(SafeValue(raw.to_string()))
}

/// Removes one model-file extension, in any case (`.gguf`, `.GGUF`).
fn strip_model_extension(name: &str) -> &str {
    for ext in MODEL_EXTENSIONS {
        if name.len() > ext.len() && name.is_char_boundary(name.len() - ext.len()) {
            let (stem, tail) = name.split_at(name.len() - ext.len());
            if tail.eq_ignore_ascii_case(ext) {
                return stem;
            }
        }
    }
    name
}

/// Removes a llama.cpp split suffix such as `-00001-of-00003`.
fn strip_split_suffix(name: &str) -> &str {
    let bytes = name.as_bytes();
    // "-NNNNN-of-NNNNN" is 15 bytes.
    if bytes.len() > 15 {
        let tail = &bytes[bytes.len() - 15..];
        let digits = |r: std::ops::Range<usize>| tail[r].iter().all(u8::is_ascii_digit);
        if tail[0] == b'-' && digits(1..6) && &tail[6..10] == b"-of-" && digits(10..15) {
            return &name[..name.len() - 15];
        }
    }
    name
}

/// Model architecture, as in GGUF `general.architecture` (`llama`, `qwen2`).
pub fn architecture(raw: &str) -> Option<SafeValue> {
    token(raw, true)
}

/// Quantization (`Q4_K_M`, `IQ2_XS`, `F16`), case kept.
pub fn quantization(raw: &str) -> Option<SafeValue> {
    token(raw, false)
}

/// Inference backend name (`llama.cpp`).
pub fn backend(raw: &str) -> Option<SafeValue> {
    token(raw, true)
}

/// Device family the backend runs on (`cuda`, `rocm`, `metal`, `vulkan`, `cpu`).
pub fn backend_device(raw: &str) -> Option<SafeValue> {
    token(raw, true)
}

/// Host version (`0.4.1`, `1.2.0-rc.1+abc`): letters, digits and `._-+`.
/// A version holding a path separator, `@`, `?` or `=` is refused
/// (`1.0/home/alice` gives `None`, never `1.0-home-alice`); otherwise each
/// run of other characters becomes one `-` (`1.0 beta` gives `1.0-beta`).
pub fn service_version(raw: &str) -> Option<SafeValue> {
    let raw = raw.trim();
    if raw.contains(REFUSED_CHARS) {
        return None;
    }
    restrict(raw, MAX_VALUE_LEN, |c| is_name_char(c) || c == '+').map(SafeValue)
}

/// `service.name` resource value.
pub fn service_name(raw: &str) -> Option<SafeValue> {
    token(raw, false)
}

/// GPU marketing name (`NVIDIA GeForce RTX 4090`): letters, digits, single
/// spaces and `._-+()`. A name holding a path separator, `@`, `=` or `?` is
/// refused; each run of other characters (`:` among them) becomes one `-`.
pub fn gpu_name(raw: &str) -> Option<SafeValue> {
    if raw.contains(REFUSED_CHARS) {
        return None;
    }
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    restrict(&collapsed, MAX_VALUE_LEN, |c| {
        is_name_char(c) || matches!(c, ' ' | '+' | '(' | ')')
    })
    .map(SafeValue)
}

/// A stable, anonymous GPU identity: the first 16 hex digits of a SHA-256,
/// under a fixed prefix, of the hex digits of a high-entropy id (a GPU UUID
/// such as `GPU-6f1c...`), lowercased, every other character left out; so
/// one GPU has one id however its UUID is written. The id itself is never
/// exported.
///
/// Low-entropy ids (fewer than 24 hex digits or fewer than 6 distinct ones:
/// `cuda0`, `0`, PCI bus addresses, which repeat across machines) give no
/// identity: the result is `None`.
pub fn gpu_stable_id(raw: &str) -> Option<SafeValue> {
    let hex: String = raw
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let distinct = {
        let mut seen = [false; 16];
        for c in hex.chars() {
            seen[c.to_digit(16).unwrap_or(0) as usize] = true;
        }
        seen.iter().filter(|s| **s).count()
    };
    if hex.len() < 24 || distinct < 6 {
        return None;
    }
    let digest = Sha256::new()
        .chain_update(b"survey.gpu_stable_id:")
        .chain_update(hex.as_bytes())
        .finalize();
    let mut out = String::with_capacity(16);
    for byte in &digest[..8] {
        out.push_str(&format!("{byte:02x}"));
    }
    Some(SafeValue(out))
}

/// Whether `value` has the shape of an exported `mesh_llm.gpu_stable_id`:
/// 16 lowercase hex digits (see [`gpu_stable_id`]).
pub fn is_gpu_stable_id(value: &str) -> bool {
    value.len() == 16
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A single token: refused if it holds a path separator (so any URL), `@`,
/// `?` or `=`; otherwise letters, digits and `._-`, each run of other
/// characters becoming one `-`, optionally lowercased.
fn token(raw: &str, lowercase: bool) -> Option<SafeValue> {
    let raw = raw.trim();
    if raw.contains(REFUSED_CHARS) {
        return None;
    }
    let value = restrict(raw, MAX_VALUE_LEN, is_name_char)?;
    Some(SafeValue(if lowercase {
        value.to_ascii_lowercase()
    } else {
        value
    }))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Replaces every run of characters outside `allowed` between allowed ones
/// with one `-` (runs at either end are dropped), cuts to `max` characters,
/// then trims `-`, `.`, `_` and spaces from both ends; `None` if nothing is
/// left.
fn restrict(raw: &str, max: usize, allowed: impl Fn(char) -> bool) -> Option<String> {
    let mut out = String::with_capacity(raw.len().min(max));
    let mut pending_dash = false;
    for c in raw.chars() {
        if allowed(c) {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
        if out.len() >= max {
            break;
        }
    }
    out.truncate(max);
    let trimmed = out.trim_matches(|c: char| matches!(c, '-' | '.' | '_' | ' '));
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '.') {
        None
    } else {
        Some(trimmed.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(raw: &str) -> Option<String> {
        model_id(raw).map(SafeValue::into_string)
    }

    #[test]
    fn model_ids_are_normalized() {
        let cases = [
            (
                "/home/alice/models/Qwen3-8B-Q4_K_M.gguf",
                Some("Qwen3-8B-Q4_K_M"),
            ),
            (
                "/mnt/ssd/GLM-4.5-Air-Q4_K_M-00001-of-00003.gguf",
                Some("GLM-4.5-Air-Q4_K_M"),
            ),
            (
                "C:\\Users\\bob\\Downloads\\phi-4-Q8_0.GGUF",
                Some("phi-4-Q8_0"),
            ),
            (
                "https://user:pw@hf.co/org/repo/resolve/main/gemma-3-4b-it-Q4_0.gguf?token=abc#x",
                Some("gemma-3-4b-it-Q4_0"),
            ),
            (
                "unsloth/Qwen3-8B-GGUF:Q4_K_M",
                Some("unsloth/Qwen3-8B-GGUF:Q4_K_M"),
            ),
            ("bartowski/Llama-3.2-1B", Some("bartowski/Llama-3.2-1B")),
            ("home/alice/m.gguf", Some("m")),
            ("models/tiny.gguf", Some("tiny")),
            ("org/model.gguf", Some("model")),
            ("Qwen3 8B (my copy).gguf", Some("Qwen3-8B-my-copy")),
            ("~/x.gguf", Some("x")),
            ("/", None),
            ("", None),
            ("../..", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(m(raw).as_deref(), expected, "model_id({raw:?})");
        }
    }

    #[test]
    fn urls_without_a_path_are_refused_not_reduced_to_their_host() {
        let cases = [
            ("https://user:pw@host.example", None),
            ("https://user:pw@host.example/", None),
            ("https://user:pw@host.example/?token=abc#x", None),
            ("https://hf.co/", None),
            ("https://hf.co", None),
            ("https://hf.co//", None),
            ("https://hf.co?path=/org/repo/m.gguf", None),
            ("http://host.example:8080", None),
            ("http://[::1]:8080/", None),
            ("file://", None),
            ("file:///", None),
            ("hf://host.example", None),
            ("  https://host.example  ", None),
            ("//host.example", None),
            ("//host.example/", None),
            ("\\\\fileserver", None),
            ("\\\\fileserver\\", None),
            // A `?` in user info ends the text read: what is left has no path.
            ("https://user:p?w@host.example/m.gguf", None),
            // With a path, only its last segment is kept.
            ("https://user:pw@host.example/m.gguf", Some("m")),
            ("https://host.example:8080/org/repo/m.gguf", Some("m")),
            ("file:///home/alice/models/x.gguf", Some("x")),
            ("//host.example/share/x.gguf", Some("x")),
            ("\\\\fileserver\\models\\phi-4.gguf", Some("phi-4")),
            // Not a URL: a bare name is a file name.
            ("host.example", Some("host.example")),
            ("/host.example", Some("host.example")),
        ];
        for (raw, expected) in cases {
            assert_eq!(m(raw).as_deref(), expected, "model_id({raw:?})");
            assert_eq!(
                model_file(raw).map(SafeValue::into_string).as_deref(),
                expected,
                "model_file({raw:?})"
            );
        }
    }

    #[test]
    fn service_versions_with_path_or_url_text_are_refused() {
        let cases = [
            ("1.2.0-rc.1+abc", Some("1.2.0-rc.1+abc")),
            ("0.4.1", Some("0.4.1")),
            ("  v0.4.1 ", Some("v0.4.1")),
            ("1.0 beta", Some("1.0-beta")),
            ("1.0-home-alice", Some("1.0-home-alice")),
            ("1.0/home/alice", None),
            ("/home/alice", None),
            ("/home/alice/", None),
            ("~/alice", None),
            ("C:\\Users\\bob", None),
            ("1.0\\bob", None),
            ("alice@1.0", None),
            ("https://host.example", None),
            ("1.0?token=abc", None),
            ("build=1", None),
            ("", None),
            ("  ", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                service_version(raw).map(SafeValue::into_string).as_deref(),
                expected,
                "service_version({raw:?})"
            );
        }
    }

    #[test]
    fn model_files_never_read_as_refs() {
        assert_eq!(model_id("alice/mymodel").unwrap().as_str(), "alice/mymodel");
        assert_eq!(model_file("alice/mymodel").unwrap().as_str(), "mymodel");
        assert_eq!(
            model_file("/m/Qwen3-8B-Q4_K_M.gguf").unwrap().as_str(),
            "Qwen3-8B-Q4_K_M"
        );
        assert_eq!(model_file("org/repo:Q4_K_M").unwrap().as_str(), "Q4_K_M");
    }

    #[test]
    fn stacked_extensions_and_suffixes_are_all_removed() {
        assert_eq!(model_file("/m/a.bin.gguf").unwrap().as_str(), "a");
        assert_eq!(
            model_file("x-00001-of-00002.gguf-00001-of-00002.gguf")
                .unwrap()
                .as_str(),
            "x"
        );
        assert_eq!(model_file("a.gguf-").unwrap().as_str(), "a");
        assert!(!is_gpu_stable_id("6F1C2D3E4B5A6978"));
        assert!(!is_gpu_stable_id("6f1c2d3e4b5a697"));
        assert!(is_gpu_stable_id("6f1c2d3e4b5a6978"));
    }

    #[test]
    fn model_ids_are_bounded() {
        let long = "a".repeat(500);
        assert_eq!(m(&long).unwrap().len(), MAX_MODEL_LEN);
    }

    #[test]
    fn tokens_reject_paths_and_urls() {
        assert_eq!(architecture("LLaMA").unwrap().as_str(), "llama");
        assert_eq!(quantization("Q4_K_M").unwrap().as_str(), "Q4_K_M");
        assert_eq!(backend("llama.cpp").unwrap().as_str(), "llama.cpp");
        assert!(backend("/usr/bin/llama-server").is_none());
        assert!(backend_device("http://x").is_none());
        assert!(quantization("a=b").is_none());
        assert_eq!(
            service_version("1.2.0-rc.1+abc").unwrap().as_str(),
            "1.2.0-rc.1+abc"
        );
    }

    #[test]
    fn gpu_names_keep_readable_text() {
        assert_eq!(
            gpu_name("  NVIDIA  GeForce RTX 4090 ").unwrap().as_str(),
            "NVIDIA GeForce RTX 4090"
        );
        assert_eq!(
            gpu_name("AMD Instinct MI300X (gfx942)").unwrap().as_str(),
            "AMD Instinct MI300X (gfx942)"
        );
        assert!(gpu_name("/dev/nvidia0").is_none());
        assert!(gpu_name("").is_none());
    }

    #[test]
    fn gpu_stable_ids_are_hashed_from_high_entropy_ids_only() {
        let uuid = "GPU-6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b";
        let id = gpu_stable_id(uuid).unwrap();
        assert_eq!(id.as_str().len(), 16);
        assert!(id.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!uuid.to_lowercase().contains(id.as_str()));
        // Same GPU, same id, however it is written.
        assert_eq!(
            gpu_stable_id("6F1C2D3E-4B5A-6978-8A9B-0C1D2E3F4A5B"),
            Some(id)
        );
        for low in [
            "cuda0",
            "0",
            "index:0",
            "00000000:01:00.0",
            "0000:c1:00.0",
            "",
        ] {
            assert_eq!(gpu_stable_id(low), None, "{low}");
        }
    }

    fn assert_safe(value: &str, max: usize, extra: &[char]) {
        assert!(!value.is_empty());
        assert!(value.chars().count() <= max, "{value:?} too long");
        for c in value.chars() {
            assert!(
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(&c),
                "{value:?} has {c:?}"
            );
        }
    }

    /// The properties below check what a sanitizer returns when it returns
    /// something; each sanitizer keeps ordinary values, so they are not
    /// checked on refusals alone.
    #[test]
    fn every_sanitizer_keeps_an_ordinary_value() {
        let kept: [(&str, Sanitizer, &str); 9] = [
            ("model_id", model_id, "/models/Qwen3-8B-Q4_K_M.gguf"),
            ("model_file", model_file, "/models/Qwen3-8B-Q4_K_M.gguf"),
            ("architecture", architecture, "qwen3"),
            ("quantization", quantization, "Q4_K_M"),
            ("backend", backend, "llama.cpp"),
            ("backend_device", backend_device, "cuda"),
            ("service_version", service_version, "1.2.3+build.5"),
            ("service_name", service_name, "mesh-llm"),
            ("gpu_name", gpu_name, "NVIDIA GeForce RTX 4090"),
        ];
        for (name, sanitize, raw) in kept {
            assert!(sanitize(raw).is_some(), "{name}({raw:?}) refused");
        }
        assert!(gpu_stable_id("GPU-6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b").is_some());
    }

    proptest! {
        #[test]
        fn model_id_output_is_always_safe(raw in any::<String>()) {
            if let Some(v) = model_id(&raw) {
                assert_safe(v.as_str(), MAX_MODEL_LEN, &['/', ':']);
                prop_assert!(v.as_str().matches('/').count() <= 1);
                prop_assert!(!v.as_str().contains("://"));
            }
        }

        #[test]
        fn model_paths_never_leak_directories(
            dirs in proptest::collection::vec("[A-Za-z0-9_.-]{1,12}", 1..5),
            user in "[a-z]{3,10}",
            stem in "[A-Za-z0-9][A-Za-z0-9_-]{0,39}",
            windows in any::<bool>(),
        ) {
            let canary = format!("CANARY{user}DIR");
            let sep = if windows { "\\" } else { "/" };
            let path = format!(
                "{sep}home{sep}{canary}{sep}{}{sep}{stem}.gguf",
                dirs.join(sep)
            );
            // A local path is kept as its file's name, so the checks below
            // always run (they would pass vacuously on a refusal).
            let v = model_id(&path);
            prop_assert!(v.is_some(), "{} refused", path);
            if let Some(v) = v {
                prop_assert!(!v.as_str().contains(&canary));
                prop_assert!(!v.as_str().contains('/'));
                prop_assert!(!v.as_str().contains('\\'));
            }
            let url = format!("https://{canary}:secret@host.example/{}/{stem}.gguf?token={canary}", dirs.join("/"));
            if let Some(v) = model_id(&url) {
                prop_assert!(!v.as_str().contains(&canary));
                prop_assert!(!v.as_str().contains("secret"));
            }
        }

        #[test]
        fn hosts_of_urls_without_a_path_are_never_exported(
            scheme in "[a-z][a-z0-9+.-]{0,8}",
            user in proptest::option::of("[A-Za-z0-9._~-]{1,10}(:[A-Za-z0-9._~-]{0,10})?"),
            host in "[A-Za-z0-9-]{1,12}(\\.[A-Za-z0-9-]{1,8}){0,3}",
            port in proptest::option::of(any::<u16>()),
            tail in "[/\\\\]{0,3}([?#][A-Za-z0-9=&/:.@-]{0,20})?",
        ) {
            let user = user.map(|u| format!("{u}@")).unwrap_or_default();
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let url = format!("{scheme}://{user}{host}{port}{tail}");
            prop_assert_eq!(model_id(&url), None, "{}", url);
            prop_assert_eq!(model_file(&url), None, "{}", url);
        }

        #[test]
        fn text_with_path_or_url_characters_is_refused_whole(
            raw in "[A-Za-z0-9 ._+:~-]{0,12}[/\\\\@?=][A-Za-z0-9 ._/\\\\+:@-]{0,20}",
        ) {
            let refusing: [(&str, Sanitizer); 7] = [
                ("architecture", architecture),
                ("quantization", quantization),
                ("backend", backend),
                ("backend_device", backend_device),
                ("service_version", service_version),
                ("service_name", service_name),
                ("gpu_name", gpu_name),
            ];
            for (name, sanitize) in refusing {
                prop_assert_eq!(sanitize(&raw), None, "{}({:?})", name, raw);
            }
        }

        #[test]
        fn tokens_are_always_safe(raw in any::<String>()) {
            for v in [architecture(&raw), quantization(&raw), backend(&raw), backend_device(&raw), service_name(&raw)].into_iter().flatten() {
                assert_safe(v.as_str(), MAX_VALUE_LEN, &[]);
            }
            if let Some(v) = service_version(&raw) {
                assert_safe(v.as_str(), MAX_VALUE_LEN, &['+']);
            }
            if let Some(v) = gpu_name(&raw) {
                assert_safe(v.as_str(), MAX_VALUE_LEN, &[' ', '+', '(', ')']);
                prop_assert!(!v.as_str().contains("  "));
            }
        }

        #[test]
        fn sanitized_values_are_their_own_sanitized_form(
            raw in prop_oneof![
                any::<String>(),
                "(/home/[a-z]{1,6}/)?[A-Za-z0-9 ._@:/+()=?-]{0,40}(\\.(gguf|bin|GGUF))*(-0000[1-3]-of-00003)?(\\.gguf)?[ ._-]{0,2}",
            ],
        ) {
            let sanitizers: [(&str, Sanitizer); 9] = [
                ("model_id", model_id),
                ("model_file", model_file),
                ("architecture", architecture),
                ("quantization", quantization),
                ("backend", backend),
                ("backend_device", backend_device),
                ("service_version", service_version),
                ("service_name", service_name),
                ("gpu_name", gpu_name),
            ];
            for (name, sanitize) in sanitizers {
                if let Some(v) = sanitize(&raw) {
                    let again = sanitize(v.as_str());
                    prop_assert_eq!(again.as_ref(), Some(&v), "{}({:?})", name, raw);
                    if name == "model_file" {
                        // What model_file exports, model_id keeps.
                        let kept = model_id(v.as_str());
                        prop_assert_eq!(kept.as_ref(), Some(&v));
                    }
                }
            }
            if let Some(id) = gpu_stable_id(&raw) {
                prop_assert!(is_gpu_stable_id(id.as_str()));
            }
        }

        #[test]
        fn gpu_stable_id_never_echoes_input(raw in any::<String>()) {
            if let Some(v) = gpu_stable_id(&raw) {
                prop_assert_eq!(v.as_str().len(), 16);
                prop_assert!(v.as_str().chars().all(|c| c.is_ascii_hexdigit()));
            }
        }
    }
}
