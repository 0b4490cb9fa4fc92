//! Drives the real `mesh-llm` binary with the stand-in `llama-server` and a
//! real OTLP/HTTP receiver.

#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_llm::gguf::{self, WriteValue};
use mesh_llm::runtime::NodeStatus;

pub use survey_otlp_receiver::{Mode, Point, Receiver, of, one, total};

pub const MESH_LLM: &str = env!("CARGO_BIN_EXE_mesh-llm");
pub const STANDIN: &str = env!("CARGO_BIN_EXE_llama-server-standin");

/// A scratch directory, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("mesh-llm-e2e-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What a test model file says about itself.
#[derive(Default, Clone)]
pub struct ModelFile<'a> {
    pub architecture: Option<&'a str>,
    pub file_type: Option<u32>,
    pub mode: Option<&'a str>,
    pub load_ms: Option<u32>,
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
        pairs.push((mesh_llm::standin::MODE_KEY, WriteValue::Str(mode)));
    }
    if let Some(ms) = file.load_ms {
        pairs.push((mesh_llm::standin::LOAD_MS_KEY, WriteValue::U32(ms)));
    }
    gguf::write(&path, &pairs, file.padding).unwrap();
    path
}

/// A running `mesh-llm serve`.
pub struct Node {
    child: Child,
    pub api: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    line_rx: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

/// Options for [`Node::start`].
pub struct NodeOptions<'a> {
    pub llama_server: Option<&'a str>,
    pub extra_args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for NodeOptions<'_> {
    fn default() -> Self {
        NodeOptions {
            llama_server: Some(STANDIN),
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
        let mut command = Command::new(MESH_LLM);
        command
            .arg("--api")
            .arg("127.0.0.1:0")
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .args(options.extra_args)
            .env("HOME", &dir.path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") || key.starts_with("MESH_LLM_") {
                command.env_remove(key);
            }
        }
        for (flag, default) in [("--health-timeout-secs", "5"), ("--unload-grace-secs", "2")] {
            if !options.extra_args.contains(&flag) {
                command.arg(flag).arg(default);
            }
        }
        if let Some(binary) = options.llama_server {
            command.arg("--llama-server").arg(binary);
        }
        for (key, value) in options.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn mesh-llm");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (line_tx, line_rx) = mpsc::channel();
        {
            let stdout = child.stdout.take().unwrap();
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line.clone());
                    let _ = line_tx.send(line);
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match line_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("mesh-llm: control API listening on ") {
                        return Ok(Node {
                            child,
                            api: addr.trim().parse().unwrap(),
                            lines,
                            line_rx,
                            stderr,
                        });
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        return Err((status, stderr.lock().unwrap().clone()));
                    }
                    assert!(Instant::now() < deadline, "node did not start");
                }
            }
        }
    }

    /// Waits until stdout has printed a line containing `needle`.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = self
                .line_rx
                .recv_timeout(left.min(Duration::from_millis(50)));
        }
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

    /// Runs `mesh-llm --api ADDR args...`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(MESH_LLM)
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
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if check(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "status never matched: {status:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the node to exit; returns how long it took.
    pub fn terminate(mut self) -> (ExitStatus, Duration, String) {
        let start = Instant::now();
        signal(self.child.id(), libc::SIGTERM);
        let deadline = start + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "node did not stop");
            std::thread::sleep(Duration::from_millis(10));
        };
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

pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, signal);
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
    ports: mesh_llm::inference::launch::PortPicker,
    signaller: mesh_llm::runtime::local::Signaller,
) -> mesh_llm::runtime::Node {
    mesh_llm::runtime::Node::new(
        mesh_llm::runtime::NodeSettings {
            backend: mesh_llm::inference::launch::BackendSettings {
                binary: binary.to_path_buf(),
                log_dir: dir.path.clone(),
                health_timeout: Duration::from_secs(20),
                memory_budget: u64::MAX,
                ports,
            },
            unload_grace: Duration::from_millis(300),
            signaller,
        },
        || "survey: off".to_string(),
    )
}
