//! A local backend process after launch: watched while it runs, stopped on
//! request (SIGTERM, a grace period, then SIGKILL).

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use survey::{InstanceKey, LaunchKind, ModelFacts, SurveyModel};
use tokio::sync::watch;

use crate::inference::launch::{self, Launched, ModelFileFacts};

/// A running backend the node owns.
#[derive(Debug)]
pub struct LocalBackend {
    /// Identity of this instance.
    pub instance: u64,
    /// Short model name.
    pub name: String,
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Facts from the model file.
    pub file: Option<ModelFileFacts>,
    /// Context size it was given.
    pub ctx_size: u32,
    /// GPU index it was given.
    pub gpu_id: Option<u32>,
    /// How it was launched.
    pub kind: LaunchKind,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Process id.
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
    /// When it became healthy.
    pub loaded_at: Instant,
    /// Running, being stopped on purpose, or exited: decides, under one
    /// lock, whether an exit was asked for.
    state: Mutex<State>,
    /// The exit status, once the process has exited.
    exited: watch::Receiver<Option<ExitStatus>>,
}

impl SurveyModel for LocalBackend {
    fn survey_facts(&self) -> ModelFacts {
        launch::survey_facts(
            self.instance,
            &self.model_path,
            self.file.as_ref(),
            self.ctx_size,
            self.gpu_id,
        )
    }

    fn instance_key(&self) -> InstanceKey {
        InstanceKey::from_u64(self.instance)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Stopping,
    Exited,
}

/// Why an unload did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The process had already exited before the unload (an unexpected exit).
    #[error("backend had already exited ({status})")]
    AlreadyExited {
        /// Its exit status.
        status: ExitStatus,
    },
    /// The process did not exit even after SIGKILL.
    #[error("backend pid {pid} did not exit after SIGKILL")]
    Unkillable {
        /// Process id.
        pid: u32,
    },
}

impl LocalBackend {
    /// Takes ownership of a launched backend and starts watching it. When the
    /// process exits without [`stop`](LocalBackend::stop) having been called,
    /// `on_unexpected_exit` runs with the backend and the exit status.
    pub fn watch(
        launched: Launched,
        on_unexpected_exit: impl FnOnce(Arc<LocalBackend>, ExitStatus) + Send + 'static,
    ) -> Arc<LocalBackend> {
        let Launched {
            spec,
            port,
            mut child,
            log,
        } = launched;
        let (exit_tx, exit_rx) = watch::channel(None);
        let backend = Arc::new(LocalBackend {
            instance: spec.instance,
            name: spec.name,
            model_path: spec.model_path,
            file: spec.file,
            ctx_size: spec.ctx_size,
            gpu_id: spec.gpu_id,
            kind: spec.kind,
            port,
            pid: child.id().unwrap_or(0),
            log,
            loaded_at: Instant::now(),
            state: Mutex::new(State::Running),
            exited: exit_rx,
        });
        let watched = backend.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => status,
                Err(error) => {
                    tracing::error!(model = %watched.name, "cannot wait for backend: {error}");
                    return;
                }
            };
            let unexpected = {
                let mut state = watched.state.lock().unwrap_or_else(|e| e.into_inner());
                let was = *state;
                *state = State::Exited;
                was == State::Running
            };
            let _ = exit_tx.send(Some(status));
            if unexpected {
                on_unexpected_exit(watched, status);
            }
        });
        backend
    }

    /// How long it has been loaded.
    pub fn uptime(&self) -> Duration {
        self.loaded_at.elapsed()
    }

    /// Whether the process has exited.
    pub fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// Stops the backend: SIGTERM, up to `grace` to exit, then SIGKILL.
    #[survey::unload(model = self)]
    pub async fn stop(&self, grace: Duration) -> Result<ExitStatus, StopError> {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if *state == State::Exited {
                let status = (*self.exited.borrow()).unwrap_or_default();
                return Err(StopError::AlreadyExited { status });
            }
            *state = State::Stopping;
        }
        let mut exited = self.exited.clone();
        signal(self.pid, libc::SIGTERM);
        let wait_exit = |mut exited: watch::Receiver<Option<ExitStatus>>| async move {
            exited.wait_for(Option::is_some).await.ok().and_then(|s| *s)
        };
        if let Ok(Some(status)) = tokio::time::timeout(grace, wait_exit(exited.clone())).await {
            return Ok(status);
        }
        tracing::warn!(model = %self.name, pid = self.pid, "backend ignored SIGTERM for {grace:?}; sending SIGKILL");
        if exited.borrow_and_update().is_none() {
            signal(self.pid, libc::SIGKILL);
        }
        match tokio::time::timeout(Duration::from_secs(10), wait_exit(exited)).await {
            Ok(Some(status)) => Ok(status),
            _ => Err(StopError::Unkillable { pid: self.pid }),
        }
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}
