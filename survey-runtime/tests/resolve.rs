//! The resolver: config + environment in, settings or a reason out. One case
//! per precedence rule and per invalid value.

use std::time::Duration;

use survey_runtime::config::{Compression, Protocol, Temporality};
use survey_runtime::{DisabledReason, Resolution, Settings, TelemetryConfig};

fn config(toml_text: &str) -> TelemetryConfig {
    toml::from_str(toml_text).expect("valid TOML for TelemetryConfig")
}

fn resolve(toml_text: &str, plugin: Option<bool>, env: &[(&str, &str)]) -> Resolution {
    config(toml_text).resolve(plugin, env)
}

fn settings(toml_text: &str, plugin: Option<bool>, env: &[(&str, &str)]) -> Settings {
    match resolve(toml_text, plugin, env) {
        Resolution::Enabled { settings, .. } => settings,
        Resolution::Disabled(reason) => panic!("expected enabled, got disabled: {reason}"),
    }
}

fn disabled(toml_text: &str, plugin: Option<bool>, env: &[(&str, &str)]) -> DisabledReason {
    match resolve(toml_text, plugin, env) {
        Resolution::Disabled(reason) => reason,
        Resolution::Enabled { settings, .. } => panic!("expected disabled, got {settings:?}"),
    }
}

fn invalid_key(toml_text: &str, env: &[(&str, &str)]) -> String {
    match disabled(toml_text, Some(true), env) {
        DisabledReason::Invalid(invalid) => {
            let message = DisabledReason::Invalid(invalid.clone()).to_string();
            assert!(message.contains(&invalid.key), "{message}");
            invalid.key
        }
        other => panic!("expected an invalid setting, got {other}"),
    }
}

/// A table of environment variables.
type Env<'a> = &'a [(&'a str, &'a str)];

const ENDPOINT: &str = "endpoint = \"http://collector:4318\"";

#[test]
fn opt_in_rules() {
    let env_endpoint = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")];
    // (config, plugin switch, env, enabled?)
    let cases: &[(&str, Option<bool>, Env, bool)] = &[
        ("", None, &[], false),
        ("", None, &env_endpoint, false), // ambient env never opts in
        ("", Some(true), &env_endpoint, true),
        ("enabled = true", None, &env_endpoint, true),
        (ENDPOINT, None, &[], true), // naming an endpoint in the config opts in
        (
            "[metrics]\nendpoint = \"http://c/v1/metrics\"",
            None,
            &[],
            true,
        ),
        (ENDPOINT, Some(false), &[], false), // plugin switch off wins
        (
            "enabled = false\nendpoint = \"http://c\"",
            Some(true),
            &[],
            false,
        ), // telemetry.enabled = false wins
        ("enabled = true", None, &[], false), // opted in, but no endpoint anywhere
        (ENDPOINT, None, &[("OTEL_SDK_DISABLED", "true")], false),
        (ENDPOINT, None, &[("OTEL_SDK_DISABLED", "TRUE")], false),
        (ENDPOINT, None, &[("OTEL_SDK_DISABLED", "false")], true),
        (ENDPOINT, None, &[("OTEL_SDK_DISABLED", "")], true),
    ];
    for (toml_text, plugin, env, enabled) in cases {
        let resolution = resolve(toml_text, *plugin, env);
        assert_eq!(
            matches!(resolution, Resolution::Enabled { .. }),
            *enabled,
            "config {toml_text:?}, plugin {plugin:?}, env {env:?}: {resolution:?}"
        );
    }
    assert_eq!(disabled("", None, &[]), DisabledReason::NotOptedIn);
    assert_eq!(
        disabled(ENDPOINT, Some(false), &[]),
        DisabledReason::SwitchedOff("[[plugin]] name = \"survey\" enabled")
    );
    assert_eq!(
        disabled("enabled = false", Some(true), &[]),
        DisabledReason::SwitchedOff("telemetry.enabled")
    );
    assert_eq!(
        disabled("enabled = true", None, &[]),
        DisabledReason::NoEndpoint
    );
    assert_eq!(
        disabled(ENDPOINT, None, &[("OTEL_SDK_DISABLED", "true")]),
        DisabledReason::SdkDisabled
    );
}

#[test]
fn endpoint_precedence_and_paths() {
    let all_env = [
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "http://env-metrics:1/custom",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env-base:2/prefix/"),
    ];
    let cases: &[(&str, Env, &str, &str)] = &[
        (
            "endpoint = \"http://cfg:3\"\n[metrics]\nendpoint = \"http://cfg-metrics:4/m\"",
            &all_env,
            "http://cfg-metrics:4/m",
            "telemetry.metrics.endpoint",
        ),
        (
            "endpoint = \"http://cfg:3/\"",
            &all_env,
            "http://cfg:3/v1/metrics",
            "telemetry.endpoint",
        ),
        (
            "enabled = true",
            &all_env,
            "http://env-metrics:1/custom",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ),
        (
            "enabled = true",
            &all_env[1..],
            "http://env-base:2/prefix/v1/metrics",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            "endpoint = \"https://otel.example.com\"",
            &[],
            "https://otel.example.com/v1/metrics",
            "telemetry.endpoint",
        ),
    ];
    for (toml_text, env, endpoint, source) in cases {
        let s = settings(toml_text, None, env);
        assert_eq!(
            (s.endpoint.as_str(), s.endpoint_source),
            (*endpoint, *source),
            "{toml_text}"
        );
    }
}

#[test]
fn defaults() {
    let s = settings(ENDPOINT, None, &[]);
    assert_eq!(s.protocol, Protocol::HttpProtobuf);
    assert_eq!(s.compression, Compression::Gzip);
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert_eq!(s.export_interval, Duration::from_secs(15));
    assert_eq!(s.queue_size, 2048);
    assert_eq!(s.temporality, Temporality::Cumulative);
    assert_eq!(s.service_name, "mesh-llm");
    assert_eq!(s.shutdown_timeout, Duration::from_secs(3));
    assert!(s.headers.is_empty());
}

#[test]
fn config_wins_over_env_for_every_setting() {
    let env = [
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "http://env:1/v1/metrics",
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=env,x-env=1"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ("OTEL_SERVICE_NAME", "env-name"),
    ];
    let s = settings(
        "endpoint = \"http://cfg:2\"\nheaders = { Authorization = \"cfg\" }\ntimeout_secs = 4\n\
         compression = \"gzip\"\nprotocol = \"http/protobuf\"\nexport_interval_secs = 20\n\
         service_name = \"cfg-name\"",
        None,
        &env,
    );
    assert_eq!(s.endpoint, "http://cfg:2/v1/metrics");
    assert_eq!(
        s.headers.get("authorization").map(String::as_str),
        Some("cfg")
    );
    assert_eq!(s.headers.get("x-env").map(String::as_str), Some("1"));
    assert_eq!(s.timeout, Duration::from_secs(4));
    assert_eq!(s.compression, Compression::Gzip);
    assert_eq!(s.protocol, Protocol::HttpProtobuf);
    assert_eq!(s.export_interval, Duration::from_secs(20));
    assert_eq!(s.service_name, "cfg-name");
}

#[test]
fn env_fills_what_the_config_leaves_out() {
    let env = [
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "a=metrics%20value"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=general,b=ignored"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "9000"),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "30000"),
        ("OTEL_SERVICE_NAME", "node-7"),
    ];
    let s = settings(ENDPOINT, None, &env);
    // Signal-specific variables win over general ones; the lists are not merged.
    assert_eq!(s.headers.len(), 1);
    assert_eq!(s.headers["a"], "metrics value");
    assert_eq!(s.timeout, Duration::from_millis(2500));
    assert_eq!(s.compression, Compression::None);
    assert_eq!(s.protocol, Protocol::HttpJson);
    assert_eq!(s.temporality, Temporality::Delta);
    assert_eq!(s.export_interval, Duration::from_secs(30));
    assert_eq!(s.service_name, "node-7");
}

#[test]
fn timeout_never_exceeds_the_interval() {
    let s = settings(
        &format!("{ENDPOINT}\nexport_interval_secs = 2\ntimeout_secs = 10"),
        None,
        &[],
    );
    assert_eq!(s.timeout, Duration::from_secs(2));
}

#[test]
fn invalid_values_disable_with_the_key_named() {
    let cases: &[(&str, Env, &str)] = &[
        ("endpoint = \"ftp://c\"", &[], "telemetry.endpoint"),
        ("endpoint = \"collector:4318\"", &[], "telemetry.endpoint"),
        ("endpoint = \"http://\"", &[], "telemetry.endpoint"),
        (
            "[metrics]\nendpoint = \"file:///tmp/x\"",
            &[],
            "telemetry.metrics.endpoint",
        ),
        (
            "",
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            "",
            &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "grpc://x")],
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ),
        (
            &format!("{ENDPOINT}\nexport_interval_secs = 0"),
            &[],
            "telemetry.export_interval_secs",
        ),
        (
            &format!("{ENDPOINT}\nexport_interval_secs = -5"),
            &[],
            "telemetry.export_interval_secs",
        ),
        (
            &format!("{ENDPOINT}\nqueue_size = 0"),
            &[],
            "telemetry.queue_size",
        ),
        (
            &format!("{ENDPOINT}\nqueue_size = 99999999"),
            &[],
            "telemetry.queue_size",
        ),
        (
            &format!("{ENDPOINT}\ntimeout_secs = 0"),
            &[],
            "telemetry.timeout_secs",
        ),
        (
            &format!("{ENDPOINT}\nshutdown_timeout_secs = 0"),
            &[],
            "telemetry.shutdown_timeout_secs",
        ),
        (
            &format!("{ENDPOINT}\nheaders = {{ \"bad name\" = \"x\" }}"),
            &[],
            "telemetry.headers.bad name",
        ),
        (
            &format!("{ENDPOINT}\nheaders = {{ ok = \"line\\nbreak\" }}"),
            &[],
            "telemetry.headers.ok",
        ),
        (
            &format!("{ENDPOINT}\ncompression = \"zstd\""),
            &[],
            "telemetry.compression",
        ),
        (
            &format!("{ENDPOINT}\nprotocol = \"grpc\""),
            &[],
            "telemetry.protocol",
        ),
        (
            &format!("{ENDPOINT}\nservice_name = \"///\""),
            &[],
            "telemetry.service_name",
        ),
        (
            ENDPOINT,
            &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            ENDPOINT,
            &[("OTEL_EXPORTER_OTLP_HEADERS", "a=%zz")],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            ENDPOINT,
            &[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")],
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            ENDPOINT,
            &[("OTEL_METRIC_EXPORT_INTERVAL", "0")],
            "OTEL_METRIC_EXPORT_INTERVAL",
        ),
        (
            ENDPOINT,
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            ENDPOINT,
            &[(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "sometimes",
            )],
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        ),
    ];
    for (toml_text, env, key) in cases {
        assert_eq!(
            invalid_key(toml_text, env),
            *key,
            "config {toml_text:?} env {env:?}"
        );
    }
}

#[test]
fn errors_never_echo_secrets() {
    let reason = disabled(
        "endpoint = \"ftp://user:SECRET@c/?token=SECRET\"\nheaders = { authorization = \"Bearer SECRET\" }",
        None,
        &[],
    );
    assert!(!reason.to_string().contains("SECRET"), "{reason}");
    let s = settings(
        "endpoint = \"https://user:SECRET@c.example/base?token=SECRET\"",
        None,
        &[],
    );
    assert_eq!(s.display_endpoint(), "https://c.example/base/v1/metrics");
}

#[test]
fn prompt_shape_metrics_are_off_unless_the_config_turns_them_on() {
    // Off by default, whatever the environment says.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        (
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "gen_ai_latest_experimental",
        ),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"),
        ("PROMPT_SHAPE_METRICS", "true"),
    ];
    assert!(!settings("enabled = true", None, &env).prompt_shape_metrics);
    assert!(!settings(ENDPOINT, None, &[]).prompt_shape_metrics);
    match resolve(
        &format!("{ENDPOINT}\nprompt_shape_metrics = true"),
        None,
        &[],
    ) {
        Resolution::Enabled { settings, warnings } => {
            assert!(settings.prompt_shape_metrics);
            assert!(warnings.is_empty(), "{warnings:?}");
        }
        other => panic!("{other:?}"),
    }
    // In local mode too: the switch only decides what is recorded.
    let local = settings("mode = \"local\"\nprompt_shape_metrics = true", None, &[]);
    assert!(local.prompt_shape_metrics);
    // Not a boolean: the key is named.
    let error = toml::from_str::<TelemetryConfig>("prompt_shape_metrics = \"yes\"").unwrap_err();
    assert!(
        error.to_string().contains("prompt_shape_metrics"),
        "{error}"
    );
}

#[test]
fn the_spec_example_table_deserializes() {
    let c = config(
        r#"
enabled = true
service_name = "mesh-llm"
endpoint = "https://otel.example.com"
headers = { "authorization" = "Bearer TOKEN" }
export_interval_secs = 15
queue_size = 2048
prompt_shape_metrics = false

[metrics]
endpoint = "https://otel.example.com/v1/metrics"
"#,
    );
    let s = settings_of(&c);
    assert_eq!(s.endpoint, "https://otel.example.com/v1/metrics");
    assert_eq!(s.headers["authorization"], "Bearer TOKEN");
    assert_eq!(s.export_interval, Duration::from_secs(15));
    assert_eq!(s.queue_size, 2048);
    assert!(!s.prompt_shape_metrics);
}

fn settings_of(c: &TelemetryConfig) -> Settings {
    match c.resolve(None, &[] as &[(&str, &str)]) {
        Resolution::Enabled { settings, .. } => settings,
        Resolution::Disabled(reason) => panic!("{reason}"),
    }
}

#[test]
fn unknown_keys_and_wrong_types_are_deserialize_errors_naming_the_key() {
    let err = toml::from_str::<TelemetryConfig>("endpointt = \"http://c\"").unwrap_err();
    assert!(err.to_string().contains("endpointt"), "{err}");
    let err = toml::from_str::<TelemetryConfig>("queue_size = \"big\"").unwrap_err();
    assert!(err.to_string().contains("queue_size"), "{err}");
}

#[test]
fn local_mode_opts_in_and_reads_no_transport_setting() {
    let transport_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "no equals sign"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1"),
    ];
    // Each of these variables disables export mode, naming itself...
    let good_endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
    for (key, value) in transport_env {
        let env = if key == good_endpoint.0 {
            vec![(key, value)]
        } else {
            vec![good_endpoint, (key, value)]
        };
        assert_eq!(invalid_key("enabled = true", &env), key);
    }
    // ...and none is read in local mode, which needs no endpoint.
    let s = settings("mode = \"local\"", None, &transport_env);
    assert_eq!(s.mode, survey_runtime::TelemetryMode::Local);
    assert_eq!(s.endpoint, "");
    assert!(s.headers.is_empty());
    assert_eq!(s.display_endpoint(), "local (nothing is sent)");
    assert_eq!(
        invalid_key("mode = \"offline\"", &[]),
        "telemetry.mode",
        "an unknown mode is named"
    );
}

#[test]
fn series_resets_default_to_an_hour_and_only_for_cumulative_series() {
    let hour = Some(Duration::from_secs(3600));
    assert_eq!(settings(ENDPOINT, None, &[]).series_reset, hour);
    let every = |extra: &str, env: &[(&str, &str)]| {
        settings(&format!("{ENDPOINT}\n{extra}"), None, env).series_reset
    };
    assert_eq!(
        every("series_reset_secs = 600", &[]),
        Some(Duration::from_secs(600))
    );
    assert_eq!(every("series_reset_secs = 0", &[]), None);
    let delta = [("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")];
    assert_eq!(every("", &delta), None, "delta series need no reset");
    assert_eq!(
        invalid_key(&format!("{ENDPOINT}\nseries_reset_secs = -5"), &[]),
        "telemetry.series_reset_secs"
    );
}

#[test]
fn heartbeats_default_to_an_hour_0_sends_every_interval_and_no_env_has_a_say() {
    let hour = Some(Duration::from_secs(3600));
    let resolved = |extra: &str, env: &[(&str, &str)]| match resolve(
        &format!("{ENDPOINT}\n{extra}"),
        None,
        env,
    ) {
        Resolution::Enabled { settings, warnings } => (settings.heartbeat, warnings),
        Resolution::Disabled(reason) => panic!("{extra}: disabled: {reason}"),
    };
    assert_eq!(resolved("", &[]), (hour, vec![]));
    assert_eq!(
        resolved("heartbeat_secs = 600", &[]),
        (Some(Duration::from_secs(600)), vec![])
    );
    assert_eq!(resolved("heartbeat_secs = 0", &[]), (None, vec![]));
    assert_eq!(
        resolved("heartbeat_secs = 15\nexport_interval_secs = 15", &[]),
        (Some(Duration::from_secs(15)), vec![]),
        "equal to the interval is allowed"
    );
    // No OTEL_* variable sets it: the interval's does not move it either.
    let env = [("OTEL_METRIC_EXPORT_INTERVAL", "60000")];
    assert_eq!(resolved("", &env), (hour, vec![]));
    // Delta exports hold only what changed: every one is sent.
    let delta = [("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")];
    assert_eq!(resolved("", &delta).0, None);
    assert_eq!(resolved("heartbeat_secs = 600", &delta).0, None);
}

#[test]
fn a_heartbeat_shorter_than_the_interval_warns_and_means_every_interval() {
    let (heartbeat, warnings) = match resolve(
        &format!("{ENDPOINT}\nexport_interval_secs = 30\nheartbeat_secs = 10"),
        None,
        &[],
    ) {
        Resolution::Enabled { settings, warnings } => (settings.heartbeat, warnings),
        Resolution::Disabled(reason) => panic!("disabled: {reason}"),
    };
    assert_eq!(heartbeat, None, "every interval");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    for part in [
        "telemetry.heartbeat_secs",
        "10",
        "30 s",
        "every export is sent",
    ] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
}

#[test]
fn bad_heartbeats_are_named_like_the_other_secs_keys() {
    for bad in ["-5", "-0.5", "inf", "nan", "86401"] {
        let text = format!("{ENDPOINT}\nheartbeat_secs = {bad}");
        assert_eq!(invalid_key(&text, &[]), "telemetry.heartbeat_secs", "{bad}");
        let DisabledReason::Invalid(invalid) = disabled(&text, Some(true), &[]) else {
            unreachable!()
        };
        // The same words as series_reset_secs, the other key where 0 means something.
        let series = format!("{ENDPOINT}\nseries_reset_secs = {bad}");
        let DisabledReason::Invalid(series) = disabled(&series, Some(true), &[]) else {
            unreachable!()
        };
        assert_eq!(
            invalid.problem.replace("every interval", "never"),
            series.problem,
            "{bad}"
        );
    }
    let err = toml::from_str::<TelemetryConfig>("heartbeat_secs = \"hourly\"").unwrap_err();
    assert!(err.to_string().contains("heartbeat_secs"), "{err}");
}
