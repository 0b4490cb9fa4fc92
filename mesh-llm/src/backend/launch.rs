//! The launch path: from a model entry to a healthy `llama-server`.
//!
//! Spawn → wait healthy, with every way it can fail classified where it
//! happens, by type: see [`LaunchError`]. The launch is the one place survey
//! observes a launch, for every kind (startup, multi-model, runtime load).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use survey::{DeviceFacts, LaunchKind, ModelFacts, SurveyModel};
use tokio::process::{Child, Command};

use crate::gguf;
use crate::http;
use crate::inference::proxy::Proxy;

/// Context size when neither the config nor the model names one.
pub const DEFAULT_CTX_SIZE: u32 = 4096;

/// Known llama.cpp crash signatures of a KV-cache configuration the build
/// cannot run (quantized V cache without flash attention, missing kernels).
pub const KV_CACHE_CRASH_SIGNATURES: &[&str] = &[
    "quantized V cache requires Flash Attention",
    "V cache quantization requires flash_attn",
    "BEST_FATTN_KERNEL_NONE",
    "ggml-cuda/fattn.cu",
];

/// What the node needs to launch backends.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// The `llama-server` binary: a path, or a name looked up on `PATH`.
    pub binary: PathBuf,
    /// Where backend logs go.
    pub log_dir: PathBuf,
    /// How long a backend may take to become healthy.
    pub health_timeout: Duration,
    /// Largest model file the node accepts, in bytes.
    pub memory_budget: u64,
    /// Where backend ports come from ([`PortPicker::os`] but in tests).
    pub ports: PortPicker,
    /// The inference API: a launch adds its model's route here and checks
    /// it before it counts as a success.
    pub proxy: Proxy,
}

/// Hands out a port on 127.0.0.1 for a backend to listen on.
#[derive(Clone)]
pub struct PortPicker(Arc<dyn Fn() -> std::io::Result<u16> + Send + Sync>);

impl PortPicker {
    /// A port the OS reports free (another process may still take it
    /// before the backend binds it: [`launch`] checks, and retries).
    pub fn os() -> PortPicker {
        PortPicker(Arc::new(free_port))
    }

    /// Ports from `pick` (tests hand out taken ones).
    pub fn new(pick: impl Fn() -> std::io::Result<u16> + Send + Sync + 'static) -> PortPicker {
        PortPicker(Arc::new(pick))
    }

    fn pick(&self) -> std::io::Result<u16> {
        (self.0)()
    }
}

impl Default for PortPicker {
    fn default() -> PortPicker {
        PortPicker::os()
    }
}

impl std::fmt::Debug for PortPicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortPicker")
    }
}

/// Ports tried per launch when the one picked turns out taken.
const PORT_ATTEMPTS: usize = 3;

/// Facts read from the model file itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelFileFacts {
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.file_type` as a name, else the quantization in the file name.
    pub quantization: Option<String>,
    /// `<architecture>.context_length`, the context the model was trained for.
    pub trained_context: Option<u32>,
    /// File size in bytes.
    pub size: u64,
}

impl ModelFileFacts {
    /// Reads the GGUF header of `path`, falling back to the file name.
    pub fn read(path: &Path) -> std::io::Result<ModelFileFacts> {
        let size = std::fs::metadata(path)?.len();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let mut facts = ModelFileFacts {
            size,
            quantization: gguf::quantization_from_name(name),
            ..ModelFileFacts::default()
        };
        match gguf::read(path) {
            Ok(meta) => {
                facts.architecture = meta.architecture().map(str::to_string);
                if let Some(q) = meta.quantization() {
                    facts.quantization = Some(q.to_string());
                }
                facts.trained_context = facts
                    .architecture
                    .as_deref()
                    .and_then(|arch| meta.int(&format!("{arch}.context_length")))
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0);
            }
            Err(error) => {
                tracing::warn!(model = %path.display(), "cannot read the GGUF header: {error}");
            }
        }
        Ok(facts)
    }
}

/// One model to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Identity of this instance, from launch to exit.
    pub instance: u64,
    /// Short name: the file stem. Used by the control API.
    pub name: String,
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Context size passed to the backend.
    pub ctx_size: u32,
    /// Multimodal projector, if configured.
    pub mmproj: Option<PathBuf>,
    /// GPU index, if configured.
    pub gpu_id: Option<u32>,
    /// Why it is launched.
    pub kind: LaunchKind,
    /// Facts from the file (`None` when it could not be read).
    pub file: Option<ModelFileFacts>,
}

impl LaunchSpec {
    /// A spec for `model_path`; reads the file's facts, choosing the context
    /// size from the config, else the model, else [`DEFAULT_CTX_SIZE`].
    pub fn new(
        instance: u64,
        model_path: PathBuf,
        ctx_size: Option<u32>,
        mmproj: Option<PathBuf>,
        gpu_id: Option<u32>,
        kind: LaunchKind,
    ) -> LaunchSpec {
        let file = ModelFileFacts::read(&model_path).ok();
        let ctx_size = ctx_size
            .or(file.as_ref().and_then(|f| f.trained_context))
            .unwrap_or(DEFAULT_CTX_SIZE);
        LaunchSpec {
            instance,
            name: model_name(&model_path),
            model_path,
            ctx_size,
            mmproj,
            gpu_id,
            kind,
            file,
        }
    }
}

/// The short name of a model: its file stem.
pub fn model_name(path: &Path) -> String {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model")
        .to_string();
    stem.strip_suffix(".gguf")
        .or_else(|| stem.strip_suffix(".GGUF"))
        .map(str::to_string)
        .unwrap_or(stem)
}

/// The survey view of a model: path (reduced to its stem by survey),
/// architecture and quantization from the file, the context passed to the
/// backend, and the GPU the backend was told to use.
pub fn survey_facts(
    instance: u64,
    model_path: &Path,
    file: Option<&ModelFileFacts>,
    ctx_size: u32,
    gpu_id: Option<u32>,
) -> ModelFacts {
    let mut facts = ModelFacts::local_file(instance, model_path.to_string_lossy())
        .context_length(u64::from(ctx_size))
        .backend("llama.cpp");
    if let Some(arch) = file.and_then(|f| f.architecture.clone()) {
        facts = facts.architecture(arch);
    }
    if let Some(quant) = file.and_then(|f| f.quantization.clone()) {
        facts = facts.quantization(quant);
    }
    if let Some(index) = gpu_id {
        facts = facts.device(DeviceFacts {
            gpu_index: Some(index as usize),
            ..DeviceFacts::default()
        });
    }
    facts
}

impl SurveyModel for LaunchSpec {
    fn survey_facts(&self) -> ModelFacts {
        survey_facts(
            self.instance,
            &self.model_path,
            self.file.as_ref(),
            self.ctx_size,
            self.gpu_id,
        )
    }
}

/// Every way a launch fails, decided where it happens.
#[derive(Debug, thiserror::Error, survey::FailureReason)]
pub enum LaunchError {
    /// The configured multimodal projector does not exist.
    #[error("mmproj file {path} does not exist")]
    #[survey(reason = "mmproj_missing")]
    MmprojMissing {
        /// The configured path.
        path: PathBuf,
    },
    /// The model file cannot be read.
    #[error("model file {path} cannot be read: {source}")]
    #[survey(reason = "other")]
    ModelUnreadable {
        /// The model path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The model is larger than the node's memory budget.
    #[error("model file {path} is {size} bytes, over the node's memory budget of {budget} bytes")]
    #[survey(reason = "capacity_rejected")]
    CapacityRejected {
        /// The model path.
        path: PathBuf,
        /// Model file size.
        size: u64,
        /// The budget.
        budget: u64,
    },
    /// No free local port for the backend.
    #[error("no free port on 127.0.0.1: {0}")]
    #[survey(reason = "other")]
    NoPort(std::io::Error),
    /// The backend log file cannot be created.
    #[error("cannot create backend log {path}: {source}")]
    #[survey(reason = "other")]
    Log {
        /// The log path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The backend binary is missing or not executable.
    #[error("cannot start backend {binary}: {source}")]
    #[survey(reason = "spawn_failed")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The backend exited before it became healthy.
    #[error("backend exited before it became healthy ({status}); see {log}")]
    #[survey(reason = "exited_before_healthy")]
    ExitedBeforeHealthy {
        /// Exit status.
        status: ExitStatus,
        /// The backend log.
        log: PathBuf,
        /// The end of the log.
        log_tail: String,
    },
    /// The backend crashed with a known llama.cpp KV-cache signature.
    #[error("backend crashed on its KV-cache configuration (\"{signature}\", {status}); see {log}")]
    #[survey(reason = "known_kv_cache_crash")]
    KvCacheCrash {
        /// The signature found in the log.
        signature: &'static str,
        /// Exit status.
        status: ExitStatus,
        /// The backend log.
        log: PathBuf,
        /// The end of the log.
        log_tail: String,
    },
    /// The backend did not become healthy in time; it was stopped.
    #[error("backend not healthy after {after:?}; stopped it; see {log}")]
    #[survey(reason = "health_timeout")]
    HealthTimeout {
        /// The deadline.
        after: Duration,
        /// The backend log.
        log: PathBuf,
    },
    /// The backend is healthy, but requests through the node's proxy do
    /// not reach it (`GET /v1/models` through the proxy failed); it was
    /// stopped.
    #[error(
        "backend on port {port} is healthy but unreachable through the proxy: {cause}; see {log}"
    )]
    #[survey(reason = "backend_proxy_failed")]
    ProxyFailed {
        /// The backend's port.
        port: u16,
        /// What the check through the proxy saw.
        cause: String,
        /// The backend log.
        log: PathBuf,
    },
}

/// A backend that became healthy.
#[derive(Debug)]
pub struct Launched {
    /// The spec it was launched from.
    pub spec: LaunchSpec,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The process.
    pub child: Child,
    /// Its log file.
    pub log: PathBuf,
}

/// Launches `spec` and waits until its backend is healthy.
#[survey::launch(kind = spec.kind, model = spec)]
pub async fn launch(
    spec: &LaunchSpec,
    settings: &BackendSettings,
) -> Result<Launched, LaunchError> {
    if let Some(mmproj) = &spec.mmproj
        && !mmproj.is_file()
    {
        return Err(LaunchError::MmprojMissing {
            path: mmproj.clone(),
        });
    }
    let size = match &spec.file {
        Some(file) => file.size,
        None => {
            let source = std::fs::metadata(&spec.model_path)
                .err()
                .unwrap_or_else(|| std::io::Error::other("unreadable"));
            return Err(LaunchError::ModelUnreadable {
                path: spec.model_path.clone(),
                source,
            });
        }
    };
    if size > settings.memory_budget {
        return Err(LaunchError::CapacityRejected {
            path: spec.model_path.clone(),
            size,
            budget: settings.memory_budget,
        });
    }

    // A port can be taken between the pick and the backend's bind: the
    // backend then fails to bind, or another process answers its health
    // check. Either way, another port, within this one launch.
    let mut attempt = 1;
    loop {
        let port = settings.ports.pick().map_err(LaunchError::NoPort)?;
        match launch_on(spec, settings, port).await? {
            Attempt::Launched(launched) => return Ok(*launched),
            Attempt::PortLost(what) if attempt < PORT_ATTEMPTS => {
                tracing::warn!(model = %spec.name, port, "{what}; trying another port");
                attempt += 1;
            }
            Attempt::PortLost(what) => {
                return Err(LaunchError::NoPort(std::io::Error::other(format!(
                    "{what}, on {PORT_ATTEMPTS} ports in a row"
                ))));
            }
        }
    }
}

/// One try of a launch on one port.
enum Attempt {
    Launched(Box<Launched>),
    /// Another process had the port.
    PortLost(&'static str),
}

/// The marker llama-server's log has when it cannot bind its port.
const BIND_FAILED: &str = "couldn't bind HTTP server socket";

async fn launch_on(
    spec: &LaunchSpec,
    settings: &BackendSettings,
    port: u16,
) -> Result<Attempt, LaunchError> {
    let log = settings
        .log_dir
        .join(format!("{}-{}.log", spec.name, spec.instance));
    let log_file = std::fs::File::create(&log).map_err(|source| LaunchError::Log {
        path: log.clone(),
        source,
    })?;
    let log_for_stderr = log_file.try_clone().map_err(|source| LaunchError::Log {
        path: log.clone(),
        source,
    })?;

    let mut command = Command::new(&settings.binary);
    command
        .arg("-m")
        .arg(&spec.model_path)
        .arg("-c")
        .arg(spec.ctx_size.to_string())
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string());
    if let Some(mmproj) = &spec.mmproj {
        command.arg("--mmproj").arg(mmproj);
    }
    if let Some(gpu) = spec.gpu_id {
        command.arg("--main-gpu").arg(gpu.to_string());
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_for_stderr))
        // Its own process group: a Ctrl-C meant for the node does not reach
        // the backends; the node stops them itself.
        .process_group(0)
        // A launch cancelled mid-way (node shutdown) takes its backend with it.
        .kill_on_drop(true);
    tracing::info!(model = %spec.name, port, kind = %spec.kind, "spawning {}", settings.binary.display());
    let mut child = command.spawn().map_err(|source| LaunchError::Spawn {
        binary: settings.binary.clone(),
        source,
    })?;

    let client = settings.proxy.http_client();
    match wait_healthy(&mut child, client, port, settings.health_timeout).await {
        Health::Ready => {
            let pid = child.id();
            // Bounded: on a machine with very many processes the scan of
            // /proc gives up and the answer counts as unknown.
            let scan = tokio::task::spawn_blocking(move || listens_on(pid, port));
            let ours = tokio::time::timeout(OWNERSHIP_SCAN, scan)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            if ours == Some(false) {
                kill(&mut child).await;
                return Ok(Attempt::PortLost(
                    "another process answered the backend's health check",
                ));
            }
            // The route, checked end to end through the proxy; removed
            // again if the check fails or this launch is cancelled.
            let route = RouteGuard::add(&settings.proxy, spec, port);
            if let Err(cause) = settings.proxy.check(&spec.name).await {
                drop(route);
                kill(&mut child).await;
                return Err(LaunchError::ProxyFailed { port, cause, log });
            }
            route.keep();
            Ok(Attempt::Launched(Box::new(Launched {
                spec: spec.clone(),
                port,
                child,
                log,
            })))
        }
        Health::Exited(status) => {
            let log_tail = log_tail(&log);
            if log_tail.contains(BIND_FAILED) {
                return Ok(Attempt::PortLost("the backend could not bind its port"));
            }
            match kv_cache_signature(&log_tail) {
                Some(signature) => Err(LaunchError::KvCacheCrash {
                    signature,
                    status,
                    log,
                    log_tail,
                }),
                None => Err(LaunchError::ExitedBeforeHealthy {
                    status,
                    log,
                    log_tail,
                }),
            }
        }
        Health::TimedOut => {
            kill(&mut child).await;
            Err(LaunchError::HealthTimeout {
                after: settings.health_timeout,
                log,
            })
        }
    }
}

/// Kills a backend this launch gives up on, and reaps it (5 s at most).
async fn kill(child: &mut Child) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// A model's route in the proxy, removed on drop unless kept.
struct RouteGuard<'a> {
    proxy: &'a Proxy,
    name: &'a str,
    instance: u64,
    keep: bool,
}

impl<'a> RouteGuard<'a> {
    fn add(proxy: &'a Proxy, spec: &'a LaunchSpec, port: u16) -> RouteGuard<'a> {
        proxy.add_route(&spec.name, spec.survey_facts(), port);
        RouteGuard {
            proxy,
            name: &spec.name,
            instance: spec.instance,
            keep: false,
        }
    }

    /// Keeps the route and serves it to clients.
    fn keep(mut self) {
        self.proxy.publish_route(self.name, self.instance);
        self.keep = true;
    }
}

impl Drop for RouteGuard<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.proxy.remove_route(self.name, self.instance);
        }
    }
}

/// Whether the socket listening on 127.0.0.1:`port` belongs to process
/// `pid` or one of its descendants (a wrapper script's child counts);
/// `None` where that cannot be read (outside Linux, or no process found
/// holding it, as for another user's process).
fn listens_on(pid: Option<u32>, port: u16) -> Option<bool> {
    let pid = pid?;
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // Local address 127.0.0.1:port as the kernel writes it, state LISTEN.
    let local = format!("0100007F:{port:04X}");
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                .flatten()
        })
        .collect();
    let holds = |process: u32| {
        std::fs::read_dir(format!("/proc/{process}/fd"))
            .map(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .map(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    };
    if holds(pid) {
        return Some(true);
    }
    let owners: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|process| holds(*process))
        .collect();
    if owners.is_empty() {
        return None;
    }
    Some(owners.iter().any(|owner| descends_from(*owner, pid)))
}

/// Whether `process` is `ancestor` or one of its descendants.
/// The parent of process `pid`, from `/proc/PID/stat` (`pid (comm) state
/// ppid ...`, where comm may hold spaces and parentheses).
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn descends_from(mut process: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        if process == ancestor {
            return true;
        }
        match parent_of(process) {
            Some(parent) if parent > 1 => process = parent,
            _ => return false,
        }
    }
    false
}

enum Health {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

/// The longest the port-ownership check may scan `/proc` before it counts
/// as unknown (the launch then goes on, as where `/proc` is missing).
const OWNERSHIP_SCAN: Duration = Duration::from_secs(2);

/// Polls `GET /health` (503 while loading, 200 when ready) until `timeout`,
/// watching for the process to exit.
async fn wait_healthy(
    child: &mut Child,
    client: &reqwest::Client,
    port: u16,
    timeout: Duration,
) -> Health {
    let deadline = Instant::now() + timeout;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let health = http::url(addr, "/health");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Health::Exited(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Health::TimedOut;
        }
        let probe = client
            .get(&health)
            .timeout(left.min(Duration::from_secs(2)))
            .send();
        if let Ok(response) = probe.await
            && response.status() == reqwest::StatusCode::OK
        {
            return Health::Ready;
        }
        tokio::select! {
            status = child.wait() => {
                if let Ok(status) = status {
                    return Health::Exited(status);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(100).min(left)) => {}
        }
    }
}

/// A free port on 127.0.0.1, as the OS hands one out.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The last 16 KiB of the log, for local diagnostics and crash signatures.
pub fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.take(16 * 1024).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The known KV-cache crash signature in `log_tail`, if any.
pub fn kv_cache_signature(log_tail: &str) -> Option<&'static str> {
    KV_CACHE_CRASH_SIGNATURES
        .iter()
        .copied()
        .find(|signature| log_tail.contains(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_cache_signatures_are_found_in_log_tails() {
        let tail = "llama_init_from_model: V cache quantization requires flash_attn\nAborted\n";
        assert_eq!(
            kv_cache_signature(tail),
            Some("V cache quantization requires flash_attn")
        );
        assert_eq!(
            kv_cache_signature("/src/ggml/src/ggml-cuda/fattn.cu:123: fatal error"),
            Some("ggml-cuda/fattn.cu")
        );
        assert_eq!(kv_cache_signature("error: failed to load model"), None);
    }

    #[test]
    fn model_names_are_file_stems() {
        assert_eq!(
            model_name(Path::new("/m/Qwen3-8B-Q4_K_M.gguf")),
            "Qwen3-8B-Q4_K_M"
        );
        assert_eq!(model_name(Path::new("phi.GGUF")), "phi");
        assert_eq!(model_name(Path::new("/m/raw-model")), "raw-model");
    }
}
