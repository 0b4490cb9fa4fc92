//! mesh-llm nodes driven from outside, as an operator would: `mesh-llm
//! serve` started with both APIs on free loopback ports, its output
//! watched, its command line called, stopped with SIGTERM; GGUF model files
//! that tell the stand-in backend how to behave; a node run in-process
//! through the library; and a client for the node's inference API. The
//! tests, the proxy bench and the README's demo share it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_llm::gguf::{self, WriteValue};
use mesh_llm::node::NodeStatus;

use crate::receiver::Receiver;
use crate::wait::{poll, wait_until};
use crate::{TestDir, binaries};

/// How to run a node.
pub struct Launch<'a> {
    /// The program: the `mesh-llm` binary, or one that runs its command
    /// line after `prefix`.
    pub program: &'a Path,
    /// Arguments before mesh-llm's own (`["node"]` for the demo).
    pub prefix: &'a [&'a str],
    /// The config file.
    pub config: &'a Path,
    /// Backend logs.
    pub log_dir: &'a Path,
    /// The `llama-server` binary.
    pub llama_server: Option<&'a Path>,
    /// More `serve` flags.
    pub extra_args: &'a [&'a str],
    /// Environment set for the node (`OTEL_*` and `MESH_LLM_*` of this
    /// process are removed first).
    pub env: &'a [(&'a str, &'a str)],
    /// `RUST_LOG` of the node.
    pub log_filter: &'a str,
}

/// A running node.
pub struct Node {
    child: Child,
    program: PathBuf,
    prefix: Vec<String>,
    /// Its control API.
    pub api: SocketAddr,
    /// Its inference API.
    pub http: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    /// Starts a node; `Err` with its exit status (if it exited) and what it
    /// wrote on stderr if it did not come up within 30 s.
    pub fn spawn(launch: Launch) -> Result<Node, (Option<ExitStatus>, String)> {
        let mut command = Command::new(launch.program);
        command
            .args(launch.prefix)
            .arg("--api")
            .arg("127.0.0.1:0")
            .arg("serve")
            .arg("--http")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(launch.config)
            .arg("--log-dir")
            .arg(launch.log_dir)
            .args(launch.extra_args)
            .env("RUST_LOG", launch.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") || key.starts_with("MESH_LLM_") {
                command.env_remove(key);
            }
        }
        if let Some(binary) = launch.llama_server {
            command.arg("--llama-server").arg(binary);
        }
        for (key, value) in launch.env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| (None, format!("cannot start the node: {e}")))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let address = |line: &String, prefix: &str| line.strip_prefix(prefix)?.trim().parse().ok();
        let came_up = poll(Duration::from_secs(30), || {
            let printed = lines.lock().unwrap();
            let api = printed
                .iter()
                .find_map(|l| address(l, "mesh-llm: control API listening on "));
            let http = printed
                .iter()
                .find_map(|l| address(l, "mesh-llm: inference API listening on "));
            match (api, http) {
                (Some(api), Some(http)) => Some(Ok((api, http))),
                _ => child.try_wait().ok().flatten().map(Err),
            }
        });
        match came_up {
            Some(Ok((api, http))) => Ok(Node {
                child,
                program: launch.program.to_path_buf(),
                prefix: launch.prefix.iter().map(|s| s.to_string()).collect(),
                api,
                http,
                lines,
                stderr,
            }),
            exited => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                Err((exited.and_then(Result::err), stderr.lock().unwrap().clone()))
            }
        }
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until stdout has printed a line containing `needle`.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> bool {
        poll(timeout, || {
            let lines = self.lines.lock().unwrap();
            lines.iter().any(|l| l.contains(needle)).then_some(())
        })
        .is_some()
    }

    /// Waits for the configured models' startup launches.
    pub fn wait_started(&self) {
        assert!(
            self.wait_line("mesh-llm: startup complete", Duration::from_secs(60)),
            "startup did not complete: {}",
            self.stderr()
        );
    }

    /// What the node logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Runs the node's command line against it: `mesh-llm --api ADDR args...`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.program)
            .args(&self.prefix)
            .arg("--api")
            .arg(self.api.to_string())
            .args(args)
            .output()
            .expect("run mesh-llm")
    }

    /// `mesh-llm load`, asserting success.
    pub fn load(&self, model: &Path, extra: &[&str]) -> String {
        let mut args = vec!["load", model.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "load {} failed: {}\n{}",
            model.display(),
            String::from_utf8_lossy(&out.stderr),
            self.stderr()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `mesh-llm load`, expecting failure; returns the error text.
    pub fn load_fails(&self, model: &Path, extra: &[&str]) -> String {
        let mut args = vec!["load", model.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            !out.status.success(),
            "load {} unexpectedly succeeded",
            model.display()
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `mesh-llm unload`, asserting success.
    pub fn unload(&self, name: &str) {
        let out = self.cli(&["unload", name]);
        assert!(
            out.status.success(),
            "unload {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Asserts that the survey line of `mesh-llm status` says `text`.
    pub fn assert_survey_says(&self, text: &str) {
        let survey = self.status().survey;
        assert!(survey.contains(text), "{survey}");
    }

    /// `mesh-llm status --json`.
    pub fn status(&self) -> NodeStatus {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Waits until `check` holds for the status.
    pub fn wait_status(
        &self,
        timeout: Duration,
        check: impl Fn(&NodeStatus) -> bool,
    ) -> NodeStatus {
        let mut last = None;
        let matched = poll(timeout, || {
            let status = self.status();
            if check(&status) {
                return Some(status);
            }
            last = Some(status);
            None
        });
        matched.unwrap_or_else(|| panic!("status never matched within {timeout:?}: {last:#?}"))
    }

    /// [`terminate`](Node::terminate), and the node must exit cleanly
    /// (its log in the message if not); returns how long it took and what
    /// it logged.
    pub fn stop(self) -> (Duration, String) {
        let (status, took, stderr) = self.terminate();
        assert!(status.success(), "the node exited with {status}: {stderr}");
        (took, stderr)
    }

    /// Sends SIGTERM and waits for the node to exit; returns its status,
    /// how long it took, and what it logged.
    pub fn terminate(mut self) -> (ExitStatus, Duration, String) {
        let start = Instant::now();
        signal(self.child.id(), libc::SIGTERM);
        let status = wait_until("the node to stop", Duration::from_secs(60), || {
            self.child.try_wait().unwrap()
        });
        let took = start.elapsed();
        std::thread::sleep(Duration::from_millis(100));
        (status, took, self.stderr())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// What a test model file says about itself.
#[derive(Default, Clone)]
pub struct ModelFile<'a> {
    /// `general.architecture`.
    pub architecture: Option<&'a str>,
    /// `general.file_type` (15 is Q4_K_M).
    pub file_type: Option<u32>,
    /// How the stand-in behaves when it loads the file (`healthy`,
    /// `kv-crash`, ...).
    pub mode: Option<&'a str>,
    /// How long the stand-in takes to load it.
    pub load_ms: Option<u32>,
    /// How long the stand-in takes per generated word.
    pub token_ms: Option<u32>,
    /// Bytes of padding after the metadata.
    pub padding: u64,
}

/// Writes a GGUF model file at `dir/rel` (directories created).
pub fn write_model(dir: &TestDir, rel: &str, file: ModelFile) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut pairs = Vec::new();
    if let Some(arch) = file.architecture {
        pairs.push(("general.architecture", WriteValue::Str(arch)));
    }
    if let Some(ft) = file.file_type {
        pairs.push(("general.file_type", WriteValue::U32(ft)));
    }
    if let Some(mode) = file.mode {
        pairs.push((llama_server_standin::MODE_KEY, WriteValue::Str(mode)));
    }
    if let Some(ms) = file.load_ms {
        pairs.push((llama_server_standin::LOAD_MS_KEY, WriteValue::U32(ms)));
    }
    if let Some(ms) = file.token_ms {
        pairs.push((llama_server_standin::TOKEN_MS_KEY, WriteValue::U32(ms)));
    }
    gguf::write(&path, &pairs, file.padding).unwrap();
    path
}

/// `models/Qwen3-8B-Q4_K_M.gguf` in `dir`: architecture `qwen3`, file
/// type 15 (Q4_K_M), a healthy stand-in backend.
pub fn qwen(dir: &TestDir) -> PathBuf {
    write_model(
        dir,
        "models/Qwen3-8B-Q4_K_M.gguf",
        ModelFile {
            architecture: Some("qwen3"),
            file_type: Some(15),
            ..ModelFile::default()
        },
    )
}

/// Options for [`Node::start`].
pub struct NodeOptions<'a> {
    /// The `llama-server` binary; `None` leaves the flag out.
    pub llama_server: Option<PathBuf>,
    /// More `serve` flags (`--health-timeout-secs 5` and
    /// `--unload-grace-secs 2` unless given).
    pub extra_args: &'a [&'a str],
    /// Environment set for the node beside `HOME` (the test directory).
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for NodeOptions<'_> {
    fn default() -> Self {
        NodeOptions {
            llama_server: Some(binaries::standin()),
            extra_args: &[],
            env: &[],
        }
    }
}

impl Node {
    /// Starts a node with `config` (written to `dir/config.toml`).
    pub fn start(dir: &TestDir, config: &str, options: NodeOptions) -> Node {
        Node::try_start(dir, config, options).unwrap_or_else(|(status, stderr)| {
            panic!("node exited at startup ({status}): {stderr}")
        })
    }

    /// Starts a node; `Err` with its exit status and stderr if it exits first.
    pub fn try_start(
        dir: &TestDir,
        config: &str,
        options: NodeOptions,
    ) -> Result<Node, (ExitStatus, String)> {
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut extra_args: Vec<&str> = options.extra_args.to_vec();
        for (flag, default) in [("--health-timeout-secs", "5"), ("--unload-grace-secs", "2")] {
            if !options.extra_args.contains(&flag) {
                extra_args.extend([flag, default]);
            }
        }
        let home = dir.path().to_str().expect("a UTF-8 path");
        let mut env = vec![("HOME", home)];
        env.extend_from_slice(options.env);
        let mesh_llm = binaries::mesh_llm();
        Node::spawn(Launch {
            program: &mesh_llm,
            prefix: &[],
            config: &config_path,
            log_dir: &dir.join("logs"),
            llama_server: options.llama_server.as_deref(),
            extra_args: &extra_args,
            env: &env,
            log_filter: "info",
        })
        .map_err(|(status, stderr)| match status {
            Some(status) => (status, stderr),
            None => panic!("node did not start: {stderr}"),
        })
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
                && alive(*pid)
        })
        .collect()
}

/// A `[telemetry]` table exporting to `receiver` every 300 ms.
pub fn telemetry_for(receiver: &Receiver, extra: &str) -> String {
    format!(
        "[[plugin]]\nname = \"survey\"\nenabled = true\n\n[telemetry]\nendpoint = \"{}\"\nexport_interval_secs = 0.3\ntimeout_secs = 0.3\n{extra}\n",
        receiver.endpoint()
    )
}

/// A node run in this process through the library (survey off): backends
/// from `binary`, ports from `ports`, signals through `signaller`, 300 ms
/// of grace between SIGTERM and SIGKILL.
pub fn library_node(
    dir: &TestDir,
    binary: &Path,
    ports: mesh_llm::backend::launch::PortPicker,
    signaller: mesh_llm::backend::local::Signaller,
) -> mesh_llm::node::Node {
    mesh_llm::node::Node::new(
        mesh_llm::node::NodeSettings {
            backend: mesh_llm::backend::launch::BackendSettings {
                binary: binary.to_path_buf(),
                log_dir: dir.path().to_path_buf(),
                health_timeout: Duration::from_secs(20),
                memory_budget: u64::MAX,
                ports,
                proxy: mesh_llm::inference::proxy::Proxy::default(),
            },
            unload_grace: Duration::from_millis(300),
            signaller,
        },
        || "survey: off".to_string(),
    )
}

/// A blocking HTTP client for the node's inference API (60 s per request).
pub fn http_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POSTs `body` to `path` on `http`: status, content type, body.
pub fn post(http: SocketAddr, path: &str, body: &str) -> (u16, String, String) {
    post_with(&http_client(), http, path, body)
}

/// [`post`] with `client` (its connections kept alive between calls).
pub fn post_with(
    client: &reqwest::blocking::Client,
    http: SocketAddr,
    path: &str,
    body: &str,
) -> (u16, String, String) {
    let response = client
        .post(format!("http://{http}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, response.text().unwrap())
}

/// Posts a streamed chat `body` to the node's inference API from a
/// thread: a receiver told once when the first bytes arrive, and the
/// thread, which returns the body read and whether it ended cleanly. With
/// `hang_up`, the client drops the connection after the first bytes.
pub fn stream_in_background(
    http: SocketAddr,
    body: String,
    hang_up: bool,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<(String, bool)>,
) {
    use std::io::Read;
    let (first, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut response = http_client()
            .post(format!("http://{http}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        let mut signalled = false;
        loop {
            match response.read(&mut buf) {
                Ok(0) => return (String::from_utf8_lossy(&text).into_owned(), true),
                Ok(n) => {
                    text.extend_from_slice(&buf[..n]);
                    if !signalled {
                        let _ = first.send(());
                        signalled = true;
                    }
                    if hang_up {
                        return (String::from_utf8_lossy(&text).into_owned(), false);
                    }
                }
                Err(_) => return (String::from_utf8_lossy(&text).into_owned(), false),
            }
        }
    });
    (first_rx, reader)
}

/// The `data:` payloads of an SSE body.
pub fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// The port of the backend serving `name` on `node`.
pub fn port_of(node: &Node, name: &str) -> u16 {
    node.status()
        .models
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} not loaded"))
        .port
}
