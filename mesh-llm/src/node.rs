//! The node's state: which models are loaded, loading and unloading them
//! at run time, and noticing backends that die.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use survey::LaunchKind;
use tokio::sync::watch;

use crate::backend::launch::{self, BackendSettings, LaunchError, LaunchSpec};
use crate::config::ModelEntry;
use crate::tracker::Tracker;

use crate::backend::local::{LocalBackend, Signaller, StopError};

/// How the node runs its backends.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Launch settings.
    pub backend: BackendSettings,
    /// Time a backend gets to exit after SIGTERM before SIGKILL.
    pub unload_grace: Duration,
    /// How signals reach backend processes ([`Signaller::os`] but in tests).
    pub signaller: Signaller,
}

/// A request to load a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRequest {
    /// Path of the GGUF file.
    pub model: String,
    /// Context size.
    #[serde(default)]
    pub ctx_size: Option<u32>,
    /// Multimodal projector.
    #[serde(default)]
    pub mmproj: Option<PathBuf>,
    /// GPU index.
    #[serde(default)]
    pub gpu_id: Option<u32>,
}

impl From<&ModelEntry> for LoadRequest {
    fn from(entry: &ModelEntry) -> Self {
        LoadRequest {
            model: entry.model.clone(),
            ctx_size: entry.ctx_size,
            mmproj: entry.mmproj.clone(),
            gpu_id: entry.gpu_id,
        }
    }
}

/// A loaded model, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatus {
    /// Short name (file stem).
    pub name: String,
    /// Port of its backend on 127.0.0.1.
    pub port: u16,
    /// Backend process id.
    pub pid: u32,
    /// Context size.
    pub ctx_size: u32,
    /// Seconds since it became healthy.
    pub uptime_secs: u64,
    /// How it was launched.
    pub launch_kind: String,
    /// `running`, `stopping`, or `unkillable` (it outlived SIGKILL).
    pub state: String,
}

/// A backend that exited without being asked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Short name.
    pub name: String,
    /// Seconds it had been up.
    pub uptime_secs: u64,
    /// Exit status, as text.
    pub status: String,
}

/// The node's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Loaded models.
    pub models: Vec<ModelStatus>,
    /// Backends that exited unexpectedly, oldest first.
    pub unexpected_exits: Vec<ExitRecord>,
    /// The survey plugin's status line.
    pub survey: String,
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The launch failed.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A model with this name is loaded already.
    #[error("model {0} is already loaded")]
    AlreadyLoaded(String),
    /// No loaded model has this name.
    #[error("no loaded model named {0}")]
    NotLoaded(String),
    /// The backend could not be stopped.
    #[error(transparent)]
    Stop(#[from] StopError),
    /// A task of the node failed (a bug, reported rather than panicking).
    #[error("internal error: {0}")]
    Internal(String),
    /// The node is shutting down and takes no new loads.
    #[error("the node is shutting down; no new loads")]
    ShuttingDown,
    /// The node shut down while this load was under way: the launch was
    /// stopped and is recorded as a failed launch.
    #[error("load cancelled: the node shut down before the model was ready")]
    Cancelled,
}

/// The node: its settings and its loaded models.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    settings: NodeSettings,
    loaded: Mutex<BTreeMap<String, Arc<LocalBackend>>>,
    /// Names being launched (locked after `loaded` when both are).
    launching: Mutex<std::collections::BTreeSet<String>>,
    exits: Mutex<Vec<ExitRecord>>,
    next_instance: AtomicU64,
    survey_status: Box<dyn Fn() -> String + Send + Sync>,
    /// Set at shutdown: no new loads.
    closing: watch::Sender<bool>,
    /// Set when shutdown stops waiting for loads under way: they are
    /// cancelled.
    cancel_loads: watch::Sender<bool>,
    /// Loads under way.
    loads: Tracker,
}

/// Holds a name as being launched while it lives.
struct Launching<'a> {
    node: &'a Node,
    name: String,
}

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        self.node.lock_launching().remove(&self.name);
    }
}

impl Node {
    /// A node with nothing loaded; `survey_status` reports the plugin's state.
    pub fn new(
        settings: NodeSettings,
        survey_status: impl Fn() -> String + Send + Sync + 'static,
    ) -> Node {
        Node {
            inner: Arc::new(Inner {
                settings,
                loaded: Mutex::new(BTreeMap::new()),
                launching: Mutex::new(std::collections::BTreeSet::new()),
                exits: Mutex::new(Vec::new()),
                next_instance: AtomicU64::new(1),
                survey_status: Box::new(survey_status),
                closing: watch::Sender::new(false),
                cancel_loads: watch::Sender::new(false),
                loads: Tracker::default(),
            }),
        }
    }

    /// Launches the configured models: `startup` for the first, `multi_model`
    /// for the others. A model that fails is logged; the node runs on.
    pub async fn start_configured(&self, models: &[ModelEntry]) {
        for (i, entry) in models.iter().enumerate() {
            let kind = if i == 0 {
                LaunchKind::Startup
            } else {
                LaunchKind::MultiModel
            };
            if let Err(error) = self.load_as(LoadRequest::from(entry), kind).await {
                tracing::error!(model = %entry.model, "startup launch failed: {error}");
            }
        }
    }

    /// Loads a model at run time (`runtime_load`). The load runs in a task
    /// of its own: a caller that goes away (a client hanging up) does not
    /// cancel it, which would kill the backend and record a failed launch.
    pub async fn load(&self, request: LoadRequest) -> Result<ModelStatus, NodeError> {
        let node = self.clone();
        tokio::spawn(async move { node.load_as(request, LaunchKind::RuntimeLoad).await })
            .await
            .map_err(|e| NodeError::Internal(format!("loading the model: {e}")))?
    }

    async fn load_as(
        &self,
        request: LoadRequest,
        kind: LaunchKind,
    ) -> Result<ModelStatus, NodeError> {
        let instance = self.inner.next_instance.fetch_add(1, Ordering::Relaxed);
        let _under_way = self.inner.loads.enter();
        // Cancelled at shutdown while reading the model file or launching:
        // dropping the launch records it as a failed launch (reason
        // `other`) and kills its process. Once it is launched, the backend
        // is watched and listed, whatever happens.
        let mut cancel = self.inner.cancel_loads.subscribe();
        let cancelled = async move {
            let _ = cancel.wait_for(|cancel| *cancel).await;
        };
        let mut cancelled = std::pin::pin!(cancelled);
        // Reading the model file's header is blocking file I/O: off the
        // async workers.
        let read = tokio::task::spawn_blocking(move || {
            LaunchSpec::new(
                instance,
                PathBuf::from(&request.model),
                request.ctx_size,
                request.mmproj,
                request.gpu_id,
                kind,
            )
        });
        let spec = tokio::select! {
            spec = read => spec.map_err(|e| NodeError::Internal(format!("reading the model file: {e}")))?,
            _ = &mut cancelled => return Err(NodeError::ShuttingDown),
        };
        if *self.inner.closing.borrow() {
            return Err(NodeError::ShuttingDown);
        }
        // One instance per name: a name is taken from the start of its
        // launch until its backend is gone.
        let _launching = {
            let loaded = self.lock_loaded();
            let mut launching = self.lock_launching();
            if loaded.contains_key(&spec.name) || !launching.insert(spec.name.clone()) {
                return Err(NodeError::AlreadyLoaded(spec.name));
            }
            Launching {
                node: self,
                name: spec.name.clone(),
            }
        };
        let launched = tokio::select! {
            launched = launch::launch(&spec, &self.inner.settings.backend) => launched?,
            _ = &mut cancelled => return Err(NodeError::Cancelled),
        };
        let node = self.clone();
        let backend = LocalBackend::watch(
            launched,
            self.inner.settings.signaller.clone(),
            move |backend, status| node.backend_exited(&backend, status),
        );
        tracing::info!(model = %backend.name, port = backend.port, pid = backend.pid, "model loaded");
        let status = model_status(&backend);
        self.lock_loaded().insert(backend.name.clone(), backend);
        Ok(status)
    }

    /// Unloads the model called `name` (its file stem or its configured
    /// path). It stays listed, with its state, until its process is gone: a
    /// backend that outlives SIGKILL stays listed as `unkillable`.
    pub async fn unload(&self, name: &str) -> Result<(), NodeError> {
        self.unload_with(name, self.inner.settings.unload_grace)
            .await
    }

    async fn unload_with(&self, name: &str, grace: Duration) -> Result<(), NodeError> {
        let backend = {
            let loaded = self.lock_loaded();
            loaded
                .iter()
                .find(|(key, b)| *key == name || b.model_path == std::path::Path::new(name))
                .map(|(_, b)| b.clone())
                .ok_or_else(|| NodeError::NotLoaded(name.to_string()))?
        };
        // No new inference requests for a model being stopped.
        self.unroute(&backend);
        // Its own task: a caller that goes away (a client hanging up) does
        // not cut a stop in half, which would record nothing and leave it
        // listed.
        let node = self.clone();
        let stopping = backend.clone();
        let stopped = tokio::spawn(async move {
            let stopped = stopping.stop(grace).await;
            if matches!(stopped, Ok(_) | Err(StopError::AlreadyExited { .. })) {
                node.forget(&stopping);
            }
            stopped
        })
        .await
        .map_err(|e| NodeError::Internal(format!("stopping the backend: {e}")))?;
        let status = stopped?;
        tracing::info!(model = %backend.name, %status, "model unloaded");
        Ok(())
    }

    /// Shuts the node down: takes no new loads and no new inference
    /// requests, gives loads under way and inference requests in flight
    /// `wait` to finish (then cancels the loads, each recorded as a failed
    /// launch, and cuts the requests), and unloads every model, all at once,
    /// each with `stop_grace` between SIGTERM and SIGKILL. The caller bounds
    /// the whole in time.
    pub async fn shutdown(&self, wait: Duration, stop_grace: Duration) {
        self.inner.closing.send_replace(true);
        let proxy = &self.inner.settings.backend.proxy;
        proxy.close();
        let loads = &self.inner.loads;
        let loads_done = async {
            if !loads.idle_within(wait).await {
                tracing::warn!("cancelling the loads still under way after {wait:?}");
                self.inner.cancel_loads.send_replace(true);
                // Cancelling is immediate; a second at most, then on regardless.
                loads.idle_within(Duration::from_secs(1)).await;
            }
        };
        let requests_done = async {
            if !proxy.drained(wait).await {
                tracing::warn!(
                    "cutting {} inference requests still in flight after {wait:?}",
                    proxy.in_flight()
                );
                proxy.cut();
            }
        };
        tokio::join!(loads_done, requests_done);
        self.unload_all(stop_grace).await;
    }

    /// Unloads every model at once, each with `grace` between SIGTERM and
    /// SIGKILL (node shutdown).
    pub async fn unload_all(&self, grace: Duration) {
        let names: Vec<String> = self.lock_loaded().keys().cloned().collect();
        let mut unloads = tokio::task::JoinSet::new();
        for name in names {
            let node = self.clone();
            unloads.spawn(async move {
                if let Err(error) = node.unload_with(&name, grace).await {
                    tracing::warn!(model = %name, "unload at shutdown: {error}");
                }
            });
        }
        while unloads.join_next().await.is_some() {}
    }

    /// Stops routing inference requests to `backend`.
    fn unroute(&self, backend: &LocalBackend) {
        let proxy = &self.inner.settings.backend.proxy;
        proxy.remove_route(&backend.name, backend.instance);
    }

    /// Removes `backend` from the loaded models, unless another instance
    /// took its name since.
    fn forget(&self, backend: &LocalBackend) {
        self.unroute(backend);
        let mut loaded = self.lock_loaded();
        if loaded
            .get(&backend.name)
            .is_some_and(|current| current.instance == backend.instance)
        {
            loaded.remove(&backend.name);
        }
    }

    /// The loaded models, recent unexpected exits, and the survey status.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            models: self
                .lock_loaded()
                .values()
                .map(|b| model_status(b))
                .collect(),
            unexpected_exits: self
                .inner
                .exits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            survey: (self.inner.survey_status)(),
        }
    }

    /// A backend exited that nobody asked to stop (the backend's own state
    /// decided that, so an exit is recorded exactly once, as an exit or as an
    /// unload).
    fn backend_exited(&self, backend: &LocalBackend, status: ExitStatus) {
        self.forget(backend);
        record_unexpected_exit(backend, status, &self.inner.exits);
    }

    fn lock_launching(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.inner
            .launching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<LocalBackend>>> {
        self.inner.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps at most this many unexpected exits in the status.
const MAX_EXIT_RECORDS: usize = 64;

/// Records an unexpected exit in the node's status and its local log.
#[survey::exit(model = backend)]
fn record_unexpected_exit(
    backend: &LocalBackend,
    status: ExitStatus,
    exits: &Mutex<Vec<ExitRecord>>,
) {
    let uptime = backend.uptime();
    tracing::error!(
        model = %backend.name,
        pid = backend.pid,
        %status,
        uptime_secs = uptime.as_secs(),
        log = %backend.log.display(),
        "backend exited unexpectedly"
    );
    let mut exits = exits.lock().unwrap_or_else(|e| e.into_inner());
    if exits.len() == MAX_EXIT_RECORDS {
        exits.remove(0);
    }
    exits.push(ExitRecord {
        name: backend.name.clone(),
        uptime_secs: uptime.as_secs(),
        status: status.to_string(),
    });
}

fn model_status(backend: &LocalBackend) -> ModelStatus {
    ModelStatus {
        name: backend.name.clone(),
        port: backend.port,
        pid: backend.pid,
        ctx_size: backend.ctx_size,
        uptime_secs: backend.uptime().as_secs(),
        launch_kind: backend.kind.to_string(),
        state: backend.state().to_string(),
    }
}
