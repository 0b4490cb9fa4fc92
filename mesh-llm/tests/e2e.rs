//! End to end: the real `mesh-llm` binary, the stand-in `llama-server` as its
//! backend, and a real OTLP/HTTP receiver as its collector. Every assertion
//! is on what the receiver decoded or on real processes.

use std::time::Duration;

use survey::schema;
use survey_test_support::mesh::*;
use survey_test_support::*;

const WAIT: Duration = Duration::from_secs(20);

fn gemma(dir: &TestDir) -> std::path::PathBuf {
    write_model(
        dir,
        "models/gemma-3-4b-it-Q8_0.gguf",
        ModelFile {
            architecture: Some("gemma3"),
            ..ModelFile::default()
        },
    )
}

#[test]
fn launches_unloads_crashes_and_gauges_arrive_at_the_collector() {
    let dir = TestDir::new("lifecycle");
    let receiver = Receiver::start();
    let qwen = qwen(&dir);
    let gemma = gemma(&dir);
    let config = format!(
        "[[models]]\nmodel = \"{}\"\nctx_size = 8192\n\n{}",
        qwen.display(),
        telemetry_for(&receiver, "")
    );
    let node = Node::start(&dir, &config, NodeOptions::default());
    node.wait_started();

    // Runtime load of a second model.
    let out = node.load(&gemma, &["--ctx-size", "20000"]);
    assert!(out.contains("loaded gemma-3-4b-it-Q8_0"), "{out}");
    let status = node.status();
    let names: Vec<&str> = status.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Qwen3-8B-Q4_K_M", "gemma-3-4b-it-Q8_0"]);
    for model in &status.models {
        assert!(alive(model.pid), "{model:?}");
    }
    assert!(
        status.survey.starts_with("survey: enabled"),
        "{}",
        status.survey
    );
    let table = node.cli(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("Qwen3-8B-Q4_K_M")
            && table.contains("runtime_load")
            && table.contains("survey: enabled"),
        "{table}"
    );

    // Both models are in the gauges, with exact context lengths.
    let points = receiver.wait_for_export(WAIT, |p| of(p, schema::MODEL_LOADED).len() == 2);
    let expected_device = survey::HardwareFacts::probe().backend_device;
    let ctx = one(
        &points,
        schema::MODEL_CONTEXT_LENGTH,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );
    assert_eq!(ctx.value, 8192.0);
    assert_eq!(ctx.attr("mesh_llm.context_bucket"), Some("<=8k"));
    let ctx = one(
        &points,
        schema::MODEL_CONTEXT_LENGTH,
        &[("mesh_llm.model", "gemma-3-4b-it-Q8_0")],
    );
    assert_eq!(ctx.value, 20000.0);
    assert_eq!(ctx.attr("mesh_llm.context_bucket"), Some("16k_32k"));
    assert_eq!(one(&points, schema::LOADED_MODELS, &[]).value, 2.0);

    let startup = one(
        &points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );
    assert_eq!(startup.value, 1.0);
    assert!(
        startup.has(&[
            ("mesh_llm.launch_kind", "startup"),
            ("mesh_llm.architecture", "qwen3"),
            ("mesh_llm.quantization", "Q4_K_M"),
            ("mesh_llm.backend", "llama.cpp"),
            ("mesh_llm.context_bucket", "<=8k"),
            ("mesh_llm.backend_device", expected_device.as_str()),
            ("mesh_llm.service_version", env!("CARGO_PKG_VERSION")),
        ]),
        "{startup:#?}"
    );
    assert!(startup.attr("mesh_llm.gpu_count").is_some());
    assert!(startup.attr("mesh_llm.is_soc").is_some());
    let runtime = one(
        &points,
        schema::LAUNCH_TOTAL,
        &[("mesh_llm.model", "gemma-3-4b-it-Q8_0")],
    );
    assert!(
        runtime.has(&[
            ("mesh_llm.launch_kind", "runtime_load"),
            ("mesh_llm.architecture", "gemma3"),
            ("mesh_llm.quantization", "Q8_0"), // from the file name
        ]),
        "{runtime:#?}"
    );
    let duration = one(
        &points,
        schema::LAUNCH_DURATION_MS,
        &[("mesh_llm.model", "gemma-3-4b-it-Q8_0")],
    );
    assert_eq!(duration.value, 1.0);
    assert!(
        duration.sum.unwrap() >= 300.0,
        "the stand-in loads for 300 ms: {duration:?}"
    );

    // Unload the startup model: counted with its uptime; its gauges go.
    node.unload("Qwen3-8B-Q4_K_M");
    let points = receiver.wait_for_export(WAIT, |p| total(p, schema::UNLOAD_TOTAL) == 1.0);
    let unload = one(
        &points,
        schema::UNLOAD_TOTAL,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );
    assert_eq!(unload.attr("mesh_llm.launch_kind"), Some("startup"));
    one(
        &points,
        schema::UPTIME_S,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );
    let loaded = of(&points, schema::MODEL_LOADED);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].attr("mesh_llm.model"), Some("gemma-3-4b-it-Q8_0"));

    // Kill the other backend: an unexpected exit, with uptime; gauges empty.
    let pid = node.status().models[0].pid;
    signal(pid, libc::SIGKILL);
    let status = node.wait_status(WAIT, |s| s.models.is_empty());
    assert_eq!(status.unexpected_exits.len(), 1);
    assert_eq!(status.unexpected_exits[0].name, "gemma-3-4b-it-Q8_0");
    assert_eq!(status.unexpected_exits[0].status, "signal: 9 (SIGKILL)");
    let points = receiver.wait_for_export(WAIT, |p| total(p, schema::EXIT_UNEXPECTED_TOTAL) == 1.0);
    let exit = one(
        &points,
        schema::EXIT_UNEXPECTED_TOTAL,
        &[("mesh_llm.model", "gemma-3-4b-it-Q8_0")],
    );
    assert_eq!(exit.attr("mesh_llm.launch_kind"), Some("runtime_load"));
    let uptime = one(
        &points,
        schema::UPTIME_S,
        &[("mesh_llm.model", "gemma-3-4b-it-Q8_0")],
    );
    assert_eq!(uptime.value, 1.0);
    assert!(of(&points, schema::MODEL_LOADED).is_empty());
    assert!(of(&points, schema::MODEL_CONTEXT_LENGTH).is_empty());
    assert_eq!(one(&points, schema::LOADED_MODELS, &[]).value, 0.0);

    // Shutdown: final export with exact totals; no unload for the dead backend.
    node.stop();
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 2.0);
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 2.0);
    assert_eq!(total(&points, schema::LAUNCH_FAILURE_TOTAL), 0.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 1.0);
    assert_eq!(total(&points, schema::EXIT_UNEXPECTED_TOTAL), 1.0);
    for request in receiver.requests() {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/v1/metrics")
        );
    }
}

#[test]
fn node_shutdown_unloads_every_model_and_records_the_unloads() {
    let dir = TestDir::new("shutdown");
    let receiver = Receiver::start();
    let qwen = qwen(&dir);
    let gemma = gemma(&dir);
    let config = format!(
        "[[models]]\nmodel = \"{}\"\n\n[[models]]\nmodel = \"{}\"\n\n{}",
        qwen.display(),
        gemma.display(),
        telemetry_for(&receiver, "")
    );
    let node = Node::start(&dir, &config, NodeOptions::default());
    node.wait_started();
    let pids: Vec<u32> = node.status().models.iter().map(|m| m.pid).collect();
    assert_eq!(pids.len(), 2);
    node.stop();
    for pid in pids {
        assert!(!alive(pid), "backend {pid} survived node shutdown");
    }
    let points = receiver.latest_points();
    one(
        &points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[
            ("mesh_llm.model", "Qwen3-8B-Q4_K_M"),
            ("mesh_llm.launch_kind", "startup"),
        ],
    );
    one(
        &points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[
            ("mesh_llm.model", "gemma-3-4b-it-Q8_0"),
            ("mesh_llm.launch_kind", "multi_model"),
        ],
    );
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 2.0);
    assert_eq!(of(&points, schema::UPTIME_S).len(), 2);
    assert_eq!(total(&points, schema::EXIT_UNEXPECTED_TOTAL), 0.0);
    // The default ctx_size comes from the model: none in these files, so 4096.
    let ctx = receiver
        .requests()
        .iter()
        .flat_map(|r| r.points())
        .filter(|p| p.metric == schema::MODEL_CONTEXT_LENGTH)
        .map(|p| p.value)
        .collect::<Vec<_>>();
    assert!(ctx.iter().all(|v| *v == 4096.0), "{ctx:?}");
}

#[test]
fn every_failure_mode_is_classified() {
    let dir = TestDir::new("failures");
    let receiver = Receiver::start();
    let model = |rel: &str, mode: Option<&str>, padding: u64| {
        write_model(
            &dir,
            rel,
            ModelFile {
                architecture: Some("llama"),
                file_type: Some(7),
                mode,
                padding,
                ..ModelFile::default()
            },
        )
    };
    let never = model("m/never-healthy.gguf", Some("never-healthy"), 0);
    let exits = model("m/exits.gguf", Some("exit-before-healthy:3"), 0);
    let kv = model("m/kv-crash.gguf", Some("kv-crash"), 0);
    let big = model("m/too-big.gguf", None, 3 * 1024 * 1024);
    let vision = model("m/vision.gguf", None, 0);
    let node = Node::start(
        &dir,
        &telemetry_for(&receiver, ""),
        NodeOptions {
            extra_args: &["--memory-budget-mb", "2", "--health-timeout-secs", "1.5"],
            ..NodeOptions::default()
        },
    );
    node.wait_started();

    let error = node.load_fails(&never, &[]);
    assert!(error.contains("not healthy after"), "{error}");
    let error = node.load_fails(&exits, &[]);
    assert!(
        error.contains("backend exited before it became healthy (exit status: 3); see "),
        "{error}"
    );
    let error = node.load_fails(&kv, &[]);
    assert!(error.contains("KV-cache"), "{error}");
    let error = node.load_fails(&big, &[]);
    assert!(error.contains("memory budget"), "{error}");
    let missing_projector = dir.join("m/mmproj-missing.gguf");
    let error = node.load_fails(&vision, &["--mmproj", missing_projector.to_str().unwrap()]);
    assert!(error.contains("mmproj"), "{error}");
    // The never-healthy backend was stopped at its deadline.
    assert!(processes_mentioning(never.to_str().unwrap()).is_empty());
    assert!(node.status().models.is_empty());
    node.stop();
    let expected = [
        ("never-healthy", "health_timeout"),
        ("exits", "exited_before_healthy"),
        ("kv-crash", "known_kv_cache_crash"),
        ("too-big", "capacity_rejected"),
        ("vision", "mmproj_missing"),
    ];
    assert_failures(&receiver.latest_points(), &expected);

    // A node whose backend binary does not exist, and one where it is not executable.
    let not_executable = dir.join("m/llama-server");
    std::fs::write(&not_executable, "not a program").unwrap();
    for (i, binary) in [
        "/nonexistent/llama-server",
        not_executable.to_str().unwrap(),
    ]
    .into_iter()
    .enumerate()
    {
        let receiver = Receiver::start();
        let node = Node::start(
            &dir,
            &telemetry_for(&receiver, ""),
            NodeOptions {
                llama_server: Some(binary.into()),
                ..NodeOptions::default()
            },
        );
        node.wait_started();
        let name = format!("spawn{i}");
        let error = node.load_fails(&model(&format!("m/{name}.gguf"), None, 0), &[]);
        assert!(error.contains("cannot start backend"), "{error}");
        node.stop();
        assert_failures(&receiver.latest_points(), &[(&name, "spawn_failed")]);
    }
}

/// Exactly these failures (model, reason), each once, and no success.
fn assert_failures(points: &[Point], expected: &[(&str, &str)]) {
    for (model, reason) in expected {
        let failure = one(
            points,
            schema::LAUNCH_FAILURE_TOTAL,
            &[("mesh_llm.model", model)],
        );
        assert_eq!(
            failure.attr("mesh_llm.failure_reason"),
            Some(*reason),
            "{model}"
        );
        assert_eq!(failure.attr("mesh_llm.launch_kind"), Some("runtime_load"));
        assert_eq!(failure.value, 1.0);
        one(
            points,
            schema::LAUNCH_DURATION_MS,
            &[
                ("mesh_llm.model", model),
                ("mesh_llm.failure_reason", reason),
            ],
        );
    }
    assert_eq!(
        total(points, schema::LAUNCH_FAILURE_TOTAL),
        expected.len() as f64
    );
    assert_eq!(total(points, schema::LAUNCH_SUCCESS_TOTAL), 0.0);
}

#[test]
fn survey_disabled_exports_nothing_and_the_node_works_the_same() {
    let receiver = Receiver::start();
    let endpoint = receiver.endpoint();
    let ambient = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    // (config, environment, why survey is off)
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(String, Env, &str); 4] = [
        (
            format!(
                "[[plugin]]\nname = \"survey\"\nenabled = false\n\n[telemetry]\nendpoint = \"{endpoint}\"\nexport_interval_secs = 0.1\n"
            ),
            &[],
            "switched off by [[plugin]]",
        ),
        (
            format!(
                "[[plugin]]\nname = \"survey\"\n\n[telemetry]\nenabled = false\nendpoint = \"{endpoint}\"\n"
            ),
            &[],
            "switched off by telemetry.enabled",
        ),
        // Ambient OTEL variables never opt a node in.
        (String::new(), &ambient, "not enabled"),
        // Opted in, but no endpoint anywhere.
        (
            "[[plugin]]\nname = \"survey\"\n".to_string(),
            &[],
            "no endpoint",
        ),
    ];
    for (i, (config, env, why)) in cases.iter().enumerate() {
        let dir = TestDir::new(&format!("disabled{i}"));
        let node = Node::start(
            &dir,
            config,
            NodeOptions {
                env,
                ..NodeOptions::default()
            },
        );
        node.wait_started();
        node.load(&qwen(&dir), &[]);
        let status = node.status();
        assert_eq!(status.models.len(), 1);
        assert!(
            status.survey.starts_with("survey: disabled") && status.survey.contains(why),
            "{why}: {}",
            status.survey
        );
        node.unload("Qwen3-8B-Q4_K_M");
        node.stop();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.requests().is_empty(), "a disabled node exported");
}

/// Startup, runtime load, unload and status behave as with survey disabled.
fn exercise_node(dir: &TestDir, config: &str) -> (Duration, String) {
    let qwen = qwen(dir);
    let config = format!("[[models]]\nmodel = \"{}\"\n\n{config}", qwen.display());
    let node = Node::start(dir, &config, NodeOptions::default());
    node.wait_started();
    assert_eq!(node.status().models.len(), 1);
    node.load(&gemma(dir), &[]);
    assert_eq!(node.status().models.len(), 2);
    node.unload("gemma-3-4b-it-Q8_0");
    node.unload("Qwen3-8B-Q4_K_M");
    assert!(node.status().models.is_empty());
    node.load(&qwen, &[]);
    let (took, stderr) = node.stop();
    (took, stderr)
}

#[test]
fn a_misconfigured_exporter_does_not_break_the_node() {
    let dir = TestDir::new("misconfigured");
    let (_, stderr) = exercise_node(
        &dir,
        "[[plugin]]\nname = \"survey\"\n\n[telemetry]\nendpoint = \"ftp://collector.example\"\n",
    );
    assert!(
        stderr.contains("telemetry.endpoint"),
        "the warning names the key: {stderr}"
    );
    assert!(stderr.contains("survey disabled"), "{stderr}");
}

#[test]
fn a_dead_or_silent_collector_does_not_break_the_node_and_shutdown_keeps_its_bound() {
    // Dead: nothing listens on the port.
    let receiver = Receiver::start();
    let dead_endpoint = receiver.endpoint();
    receiver.stop();
    let dir = TestDir::new("dead-collector");
    exercise_node(
        &dir,
        &format!(
            "[[plugin]]\nname = \"survey\"\n\n[telemetry]\nendpoint = \"{dead_endpoint}\"\nexport_interval_secs = 0.2\nshutdown_timeout_secs = 1\n"
        ),
    );

    // Silent: accepts and never answers; exports may take 30 s, shutdown 1 s.
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Hang);
    let dir = TestDir::new("silent-collector");
    let (took, stderr) = exercise_node(
        &dir,
        &format!(
            "[[plugin]]\nname = \"survey\"\n\n[telemetry]\nendpoint = \"{}\"\nexport_interval_secs = 30\ntimeout_secs = 30\nshutdown_timeout_secs = 1\n",
            receiver.endpoint()
        ),
    );
    assert!(
        stderr.contains("flushed: false"),
        "the final export could not finish: {stderr}"
    );
    // One backend to stop (SIGTERM, exits at once) plus survey's 1 s bound.
    assert!(took < Duration::from_secs(8), "node shutdown took {took:?}");
    receiver.set_mode(Mode::Accept);
}

#[test]
fn canaries_in_model_paths_never_reach_the_wire() {
    let dir = TestDir::new("canary");
    let receiver = Receiver::start();
    let model = write_model(
        &dir,
        "home/CANARYUSER/CANARYDIR/Qwen3-8B-Q4_K_M.gguf",
        ModelFile {
            architecture: Some("qwen3"),
            file_type: Some(15),
            ..ModelFile::default()
        },
    );
    let crash = write_model(
        &dir,
        "home/CANARYUSER/CANARYDIR/crashes-Q4_0.gguf",
        ModelFile {
            mode: Some("kv-crash"),
            ..ModelFile::default()
        },
    );
    let config = format!(
        "[[models]]\nmodel = \"{}\"\n\n{}",
        model.display(),
        telemetry_for(&receiver, "compression = \"none\"")
    );
    let node = Node::start(
        &dir,
        &config,
        NodeOptions {
            env: &[("USER", "CANARYUSER")],
            ..NodeOptions::default()
        },
    );
    node.wait_started();
    node.load_fails(&crash, &[]);
    receiver.wait_for_export(WAIT, |p| total(p, schema::LAUNCH_TOTAL) == 2.0);
    node.terminate();
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(request.path, "/v1/metrics");
        assert_eq!(request.header("content-encoding"), None);
        let raw = String::from_utf8_lossy(&request.raw_body);
        assert!(!raw.contains("CANARY"), "canary exported: {raw}");
        assert!(!raw.contains(dir.path().to_str().unwrap()));
    }
    let points = receiver.latest_points();
    one(
        &points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );
    one(
        &points,
        schema::LAUNCH_FAILURE_TOTAL,
        &[("mesh_llm.model", "crashes-Q4_0")],
    );
}

#[test]
fn unload_escalates_to_sigkill_when_sigterm_is_ignored() {
    let dir = TestDir::new("sigkill");
    let receiver = Receiver::start();
    let stubborn = write_model(
        &dir,
        "m/stubborn.gguf",
        ModelFile {
            mode: Some("ignore-sigterm"),
            ..ModelFile::default()
        },
    );
    let node = Node::start(
        &dir,
        &telemetry_for(&receiver, ""),
        NodeOptions {
            extra_args: &["--unload-grace-secs", "0.5"],
            ..NodeOptions::default()
        },
    );
    node.wait_started();
    node.load(&stubborn, &[]);
    let pid = node.status().models[0].pid;
    node.unload("stubborn");
    assert!(!alive(pid), "the backend survived SIGKILL");
    let status = node.status();
    assert!(
        status.models.is_empty() && status.unexpected_exits.is_empty(),
        "{status:?}"
    );
    assert!(node.stderr().contains("ignored SIGTERM"));
    node.terminate();
    let points = receiver.latest_points();
    one(
        &points,
        schema::UNLOAD_TOTAL,
        &[("mesh_llm.model", "stubborn")],
    );
    assert_eq!(total(&points, schema::EXIT_UNEXPECTED_TOTAL), 0.0);
}

#[test]
fn a_backend_crashing_after_it_became_healthy_is_an_unexpected_exit() {
    let dir = TestDir::new("crash-after");
    let receiver = Receiver::start();
    let flaky = write_model(
        &dir,
        "m/flaky-Q4_K_M.gguf",
        ModelFile {
            mode: Some("crash-after:700"),
            load_ms: Some(300),
            ..ModelFile::default()
        },
    );
    let node = Node::start(&dir, &telemetry_for(&receiver, ""), NodeOptions::default());
    node.wait_started();
    let started = std::time::Instant::now();
    node.load(&flaky, &[]);
    let load_took = started.elapsed();
    let status = node.wait_status(WAIT, |s| !s.unexpected_exits.is_empty());
    assert!(status.models.is_empty());
    // The stand-in aborts; with a core dump if the limits allow one.
    let exit = status.unexpected_exits[0].status.as_str();
    assert!(
        ["signal: 6 (SIGABRT)", "signal: 6 (SIGABRT) (core dumped)"].contains(&exit),
        "{status:?}"
    );
    let points = receiver.wait_for_export(WAIT, |p| total(p, schema::EXIT_UNEXPECTED_TOTAL) == 1.0);
    let exported = started.elapsed();
    let uptime = one(
        &points,
        schema::UPTIME_S,
        &[("mesh_llm.model", "flaky-Q4_K_M")],
    );
    assert_eq!(uptime.value, 1.0);
    // Survey saw it loaded before the load returned; it became ready at
    // least 300 ms after the load began and crashed 700 ms later; its exit
    // was exported by now.
    let low = (Duration::from_millis(1000).saturating_sub(load_took)).as_secs_f64();
    let high = exported.as_secs_f64();
    let sum = uptime.sum.unwrap();
    assert!(low <= sum && sum <= high, "{sum} not in [{low}, {high}]");
    node.terminate();
}

#[test]
fn llama_server_on_path_is_used_by_default() {
    let dir = TestDir::new("path");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(binaries::standin(), bin.join("llama-server")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let node = Node::start(
        &dir,
        "",
        NodeOptions {
            llama_server: None,
            env: &[("PATH", &path)],
            ..NodeOptions::default()
        },
    );
    node.wait_started();
    node.load(&qwen(&dir), &[]);
    assert_eq!(node.status().models.len(), 1);
    node.terminate();
}

#[test]
fn config_errors_stop_the_node_with_the_key_and_line_named() {
    let cases = [
        ("[[plugin]]\nname = \"surveyy\"\n", "line 2", "surveyy"),
        ("[[models]]\nmodel = \"a.gguf\"\nctx = 1\n", "line 3", "ctx"),
        (
            "[telemetry]\nqueue_size = \"big\"\n",
            "line 2",
            "telemetry.queue_size",
        ),
        (
            "[[plugin]]\nname = \"survey\"\nenabled = 1\n",
            "line 3",
            "enabled",
        ),
    ];
    for (i, (config, line, key)) in cases.into_iter().enumerate() {
        let dir = TestDir::new(&format!("bad-config{i}"));
        let Err((status, stderr)) = Node::try_start(&dir, config, NodeOptions::default()) else {
            panic!("node started with a bad config: {config:?}");
        };
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(line) && stderr.contains(key),
            "{config:?}: {stderr}"
        );
        assert!(stderr.contains("config.toml"), "{stderr}");
    }
}

/// Waits until the node's log (stderr) mentions `needle`.
fn wait_logged(node: &Node, needle: &str) {
    let logged = poll(Duration::from_secs(10), || {
        node.stderr().contains(needle).then_some(())
    });
    assert!(
        logged.is_some(),
        "never logged {needle:?}: {}",
        node.stderr()
    );
}

/// Starts `mesh-llm load` against `node` in the background.
fn load_in_background(node: &Node, model: &std::path::Path) -> std::process::Child {
    std::process::Command::new(binaries::mesh_llm())
        .arg("--api")
        .arg(node.api.to_string())
        .arg("load")
        .arg(model)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mesh-llm load")
}

#[test]
fn sigterm_during_a_slow_load_cancels_it_and_records_a_failed_launch() {
    let dir = TestDir::new("shutdown-slow-load");
    let receiver = Receiver::start();
    let slow = write_model(
        &dir,
        "m/slow.gguf",
        ModelFile {
            load_ms: Some(60_000),
            ..ModelFile::default()
        },
    );
    let node = Node::start(
        &dir,
        &telemetry_for(&receiver, ""),
        NodeOptions {
            extra_args: &["--unload-grace-secs", "1", "--shutdown-timeout-secs", "6"],
            ..NodeOptions::default()
        },
    );
    node.wait_started();
    let client = load_in_background(&node, &slow);
    wait_logged(&node, "spawning");
    let (took, _) = node.stop();
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    // The client hears that its load was cancelled.
    let answer = client.wait_with_output().unwrap();
    assert!(!answer.status.success());
    let said = String::from_utf8_lossy(&answer.stderr);
    assert!(said.contains("load cancelled"), "{said}");
    assert!(processes_mentioning("slow.gguf").is_empty());
    // Recorded: one launch, one failure (reason other), no success.
    let points = receiver.latest_points();
    survey_test_support::host::assert_one_failed_launch(&points, "other");
}

#[test]
fn a_machine_without_ca_certificates_runs_the_node() {
    // The node speaks plain HTTP on loopback: it needs no CA store.
    let dir = TestDir::new("no-ca");
    let none = [
        ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
        ("SSL_CERT_DIR", "/nonexistent"),
    ];
    let node = Node::start(
        &dir,
        "",
        NodeOptions {
            env: &none,
            ..NodeOptions::default()
        },
    );
    node.wait_started();
    node.load(&qwen(&dir), &[]);
    assert_eq!(node.status().models.len(), 1);
    node.stop();
}

#[test]
fn a_client_hanging_up_does_not_cancel_its_load() {
    let dir = TestDir::new("client-hangs-up");
    let receiver = Receiver::start();
    let slow = write_model(
        &dir,
        "m/patient.gguf",
        ModelFile {
            load_ms: Some(1_500),
            ..ModelFile::default()
        },
    );
    let node = Node::start(&dir, &telemetry_for(&receiver, ""), NodeOptions::default());
    node.wait_started();
    let mut client = load_in_background(&node, &slow);
    wait_logged(&node, "spawning");
    client.kill().unwrap();
    let _ = client.wait();
    let status = node.wait_status(Duration::from_secs(20), |s| s.models.len() == 1);
    assert_eq!(status.models[0].name, "patient");
    let points = wait_until(
        "the launch at the collector",
        Duration::from_secs(20),
        || {
            let points = receiver.latest_points();
            (total(&points, schema::LAUNCH_SUCCESS_TOTAL) == 1.0).then_some(points)
        },
    );
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 1.0);
    assert_eq!(total(&points, schema::LAUNCH_FAILURE_TOTAL), 0.0);
    node.stop();
}

#[test]
fn sigterm_during_a_load_that_finishes_in_time_records_it_and_its_unload() {
    let dir = TestDir::new("shutdown-load-finishes");
    let receiver = Receiver::start();
    let quick = write_model(
        &dir,
        "m/quick.gguf",
        ModelFile {
            load_ms: Some(800),
            ..ModelFile::default()
        },
    );
    let node = Node::start(
        &dir,
        &telemetry_for(&receiver, ""),
        NodeOptions {
            extra_args: &["--unload-grace-secs", "5", "--shutdown-timeout-secs", "15"],
            ..NodeOptions::default()
        },
    );
    node.wait_started();
    let client = load_in_background(&node, &quick);
    wait_logged(&node, "spawning");
    node.stop();
    let answer = client.wait_with_output().unwrap();
    assert!(
        answer.status.success(),
        "{}",
        String::from_utf8_lossy(&answer.stderr)
    );
    assert!(processes_mentioning("quick.gguf").is_empty());
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 1.0);
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 1.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 1.0);
}

#[test]
fn sigterm_with_several_backends_one_ignoring_it_stops_all_within_the_bound() {
    let dir = TestDir::new("shutdown-several");
    let receiver = Receiver::start();
    let mut config = String::new();
    for (name, mode) in [("a", None), ("b", Some("ignore-sigterm")), ("c", None)] {
        let model = write_model(
            &dir,
            &format!("m/{name}.gguf"),
            ModelFile {
                mode,
                ..ModelFile::default()
            },
        );
        config.push_str(&format!("[[models]]\nmodel = \"{}\"\n\n", model.display()));
    }
    config.push_str(&telemetry_for(&receiver, ""));
    let node = Node::start(
        &dir,
        &config,
        NodeOptions {
            extra_args: &["--unload-grace-secs", "30", "--shutdown-timeout-secs", "8"],
            ..NodeOptions::default()
        },
    );
    node.wait_started();
    let pids: Vec<u32> = node.status().models.iter().map(|m| m.pid).collect();
    assert_eq!(pids.len(), 3);
    let (took, _) = node.stop();
    // The grace period is cut to fit the bound; the stubborn one is killed.
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    for pid in pids {
        assert!(!alive(pid), "backend {pid} survived node shutdown");
    }
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 3.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 3.0);
    assert_eq!(total(&points, schema::EXIT_UNEXPECTED_TOTAL), 0.0);
}
