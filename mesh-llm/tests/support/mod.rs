//! Drives the real `mesh-llm` binary with the stand-in `llama-server` and a
//! real OTLP/HTTP receiver.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use mesh_llm::gguf::{self, WriteValue};

mod node;
// Each test crate uses some of these.
#[allow(unused_imports)]
pub use node::{Launch, Node, poll, signal, wait_until};
#[allow(unused_imports)]
pub use survey_otlp_receiver::{Mode, Point, Receiver, of, one, sorted_lines, total};

pub const MESH_LLM: &str = env!("CARGO_BIN_EXE_mesh-llm");
/// The stand-in `llama-server` ([`llama_server_standin::binary`]).
pub fn standin() -> &'static str {
    let path = llama_server_standin::binary();
    path.to_str()
        .unwrap_or_else(|| panic!("the stand-in's path is not UTF-8: {}", path.display()))
}

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
    pub token_ms: Option<u32>,
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

/// Options for [`Node::start`].
pub struct NodeOptions<'a> {
    pub llama_server: Option<&'a str>,
    pub extra_args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for NodeOptions<'_> {
    fn default() -> Self {
        NodeOptions {
            llama_server: Some(standin()),
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
        let home = dir.path.to_str().unwrap();
        let mut env = vec![("HOME", home)];
        env.extend_from_slice(options.env);
        Node::spawn(Launch {
            program: Path::new(MESH_LLM),
            prefix: &[],
            config: &config_path,
            log_dir: &dir.join("logs"),
            llama_server: options.llama_server.map(Path::new),
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
                log_dir: dir.path.clone(),
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
