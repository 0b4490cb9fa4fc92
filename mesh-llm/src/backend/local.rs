//! A local backend process after launch: watched while it runs, stopped on
//! request (SIGTERM, a grace period, then SIGKILL).
//!
//! One task owns the process: it waits for the exit and reaps it, and it
//! alone signals the process, on request, while the process is not reaped.
//! So a signal can never reach another process that took over the pid.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use survey::{InstanceKey, LaunchKind, ModelFacts, SurveyModel};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::launch::{self, Launched, ModelFileFacts};

/// A signal the node sends a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: exit when ready.
    Terminate,
    /// SIGKILL.
    Kill,
}

/// Delivers a signal to a backend process. The task that owns the process
/// calls it, only while the process is not reaped, so the pid is still
/// the backend's.
#[derive(Clone)]
pub struct Signaller(Arc<dyn Fn(u32, Signal) + Send + Sync>);

impl Signaller {
    /// Signals with `kill(2)`.
    pub fn os() -> Signaller {
        Signaller(Arc::new(|pid, signal| {
            let number = match signal {
                Signal::Terminate => libc::SIGTERM,
                Signal::Kill => libc::SIGKILL,
            };
            if let Ok(pid) = libc::pid_t::try_from(pid)
                && pid > 0
            {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, number);
                }
            }
        }))
    }

    /// Signals with `deliver` (tests observe or replace delivery).
    pub fn new(deliver: impl Fn(u32, Signal) + Send + Sync + 'static) -> Signaller {
        Signaller(Arc::new(deliver))
    }

    /// Delivers `signal` to `pid`.
    pub fn send(&self, pid: u32, signal: Signal) {
        (self.0)(pid, signal)
    }
}

impl Default for Signaller {
    fn default() -> Signaller {
        Signaller::os()
    }
}

impl std::fmt::Debug for Signaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signaller")
    }
}

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
    /// Process id, for display (only the owning task signals it).
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
    /// When it became healthy.
    pub loaded_at: Instant,
    /// Running, being stopped on purpose, exited, or not stoppable: decides,
    /// under one lock, whether an exit was asked for.
    state: Mutex<State>,
    /// Signal requests to the task that owns the process.
    signals: mpsc::UnboundedSender<Signal>,
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
    Unkillable,
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
    /// Another request was already stopping it; this one waited for that
    /// stop (which records the unload) to end.
    #[error("backend was already being stopped by another request")]
    AlreadyStopping,
}

/// How long a backend gets to exit after SIGKILL before it counts as
/// unkillable.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl LocalBackend {
    /// Takes ownership of a launched backend and starts watching it. When the
    /// process exits without [`stop`](LocalBackend::stop) having been called
    /// (or after a stop failed), `on_unexpected_exit` runs with the backend
    /// and the exit status.
    pub fn watch(
        launched: Launched,
        signaller: Signaller,
        on_unexpected_exit: impl FnOnce(Arc<LocalBackend>, ExitStatus) + Send + 'static,
    ) -> Arc<LocalBackend> {
        LocalBackend::watch_with(launched, signaller, None, on_unexpected_exit)
    }

    /// [`watch`](LocalBackend::watch), with a pause after the process is
    /// reaped and before its state is updated (for tests that force that
    /// interleaving).
    pub(crate) fn watch_with(
        launched: Launched,
        signaller: Signaller,
        pause_after_reap: Option<oneshot::Receiver<()>>,
        on_unexpected_exit: impl FnOnce(Arc<LocalBackend>, ExitStatus) + Send + 'static,
    ) -> Arc<LocalBackend> {
        let Launched {
            spec,
            port,
            child,
            log,
        } = launched;
        let (exit_tx, exit_rx) = watch::channel(None);
        let (signal_tx, signal_rx) = mpsc::unbounded_channel();
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
            signals: signal_tx,
            exited: exit_rx,
        });
        let watched = backend.clone();
        tokio::spawn(async move {
            let status = match own(child, signal_rx, signaller).await {
                Ok(status) => status,
                Err(error) => {
                    tracing::error!(model = %watched.name, "cannot wait for backend: {error}");
                    return;
                }
            };
            if let Some(pause) = pause_after_reap {
                let _ = pause.await;
            }
            let unexpected = {
                let mut state = watched.lock_state();
                let was = *state;
                *state = State::Exited;
                // A backend whose stop failed stays loaded (to survey too):
                // when it does end, outside the node's hands, its end counts
                // as an exit.
                matches!(was, State::Running | State::Unkillable)
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

    /// `running`, `stopping`, `exited`, or `unkillable` (it outlived
    /// SIGKILL: still listed, for someone to look at).
    pub fn state(&self) -> &'static str {
        match *self.lock_state() {
            State::Running => "running",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Unkillable => "unkillable",
        }
    }

    /// Its exit status, once it has exited (until then, the default).
    fn exit_status(&self) -> ExitStatus {
        (*self.exited.borrow()).unwrap_or_default()
    }

    /// Waits up to `within` for the process to have exited; its status.
    async fn exited_within(&self, within: Duration) -> Option<ExitStatus> {
        let mut exited = self.exited.clone();
        tokio::time::timeout(within, exited.wait_for(Option::is_some))
            .await
            .ok()?
            .ok()
            .and_then(|status| *status)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the backend: SIGTERM, up to `grace` to exit, then SIGKILL.
    #[survey::unload(model = self)]
    pub async fn stop(&self, grace: Duration) -> Result<ExitStatus, StopError> {
        let was = {
            let mut state = self.lock_state();
            let was = *state;
            if matches!(was, State::Running | State::Unkillable) {
                *state = State::Stopping;
            }
            was
        };
        match was {
            State::Exited => {
                return Err(StopError::AlreadyExited {
                    status: self.exit_status(),
                });
            }
            // One stop at a time: a second one waits for the first, and only
            // the first records the unload.
            State::Stopping => {
                self.exited_within(grace + KILL_WAIT).await;
                return Err(StopError::AlreadyStopping);
            }
            State::Running | State::Unkillable => {}
        }
        // The owning task delivers these only while the process is not
        // reaped; once it is, the requests go nowhere.
        let _ = self.signals.send(Signal::Terminate);
        if let Some(status) = self.exited_within(grace).await {
            return Ok(status);
        }
        tracing::warn!(model = %self.name, pid = self.pid, "backend ignored SIGTERM for {grace:?}; sending SIGKILL");
        let _ = self.signals.send(Signal::Kill);
        match self.exited_within(KILL_WAIT).await {
            Some(status) => Ok(status),
            None => {
                let mut state = self.lock_state();
                // It may have gone just as the wait ended: then the stop
                // worked, and is recorded.
                if *state == State::Exited {
                    return Ok(self.exit_status());
                }
                *state = State::Unkillable;
                Err(StopError::Unkillable { pid: self.pid })
            }
        }
    }
}

/// Owns the process until it exits: reaps it, and meanwhile delivers the
/// signals asked for. Waiting comes first, so no signal is delivered once
/// the process is reaped (its pid may then be another process's).
async fn own(
    mut child: Child,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    signaller: Signaller,
) -> std::io::Result<ExitStatus> {
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            status = child.wait() => return status,
            signal = signals.recv(), if open => match signal {
                // `id()` is `None` once the process is reaped.
                Some(signal) => {
                    if let Some(pid) = child.id() {
                        signaller.send(pid, signal);
                    }
                }
                None => open = false,
            },
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::backend::launch::LaunchSpec;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend that is a shell running `script`.
    fn shell(script: &str) -> Launched {
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .kill_on_drop(true)
            .spawn()
            .expect("/bin/sh runs");
        Launched {
            spec: LaunchSpec::new(
                1,
                PathBuf::from("/nonexistent/model.gguf"),
                Some(4096),
                None,
                None,
                LaunchKind::Startup,
            ),
            port: 0,
            child,
            log: PathBuf::new(),
        }
    }

    /// Whether `pid` is a process this test process started and has not
    /// reaped (a zombie counts: its pid is still ours).
    fn is_our_child(pid: u32) -> bool {
        crate::backend::launch::parent_of(pid) == Some(std::process::id())
    }

    /// A signaller that records what it delivers, and checks each target
    /// is still our unreaped child.
    fn recording() -> (Signaller, Arc<Mutex<Vec<Signal>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let signaller = Signaller::new(move |pid, signal| {
            assert!(
                is_our_child(pid),
                "{signal:?} to pid {pid}, not our unreaped child"
            );
            log.lock().unwrap().push(signal);
            Signaller::os().send(pid, signal);
        });
        (signaller, sent)
    }

    fn code(status: ExitStatus) -> Option<i32> {
        status.code()
    }

    #[tokio::test]
    async fn a_backend_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let (signaller, sent) = recording();
        let backend = LocalBackend::watch(
            shell("trap '' TERM; while :; do sleep 0.05; done"),
            signaller,
            |_, _| panic!("an asked-for exit is not unexpected"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = backend.stop(Duration::from_millis(300)).await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(*sent.lock().unwrap(), [Signal::Terminate, Signal::Kill]);
        assert_eq!(backend.state(), "exited");
    }

    #[tokio::test]
    async fn a_backend_that_exits_within_the_grace_period_is_not_killed() {
        let (signaller, sent) = recording();
        let backend = LocalBackend::watch(
            shell("trap 'sleep 0.2; exit 7' TERM; while :; do sleep 0.05; done"),
            signaller,
            |_, _| panic!("an asked-for exit is not unexpected"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = backend.stop(Duration::from_secs(5)).await.unwrap();
        assert_eq!(code(status), Some(7));
        assert_eq!(*sent.lock().unwrap(), [Signal::Terminate]);
    }

    #[tokio::test]
    async fn a_stop_between_the_reap_and_the_state_update_signals_nothing() {
        // The process exits and is reaped; before its state is updated, a
        // stop comes. Nothing may be signalled (the pid is free for reuse),
        // and the exit is recorded once, as the stop's.
        let (signaller, sent) = recording();
        let (resume, pause) = oneshot::channel();
        let unexpected = Arc::new(AtomicUsize::new(0));
        let counted = unexpected.clone();
        let backend =
            LocalBackend::watch_with(shell("exit 3"), signaller, Some(pause), move |_, _| {
                counted.fetch_add(1, Ordering::SeqCst);
            });
        let pid = backend.pid;
        // Reaped: no longer our child (the pid is gone or another's).
        let reaped = Instant::now();
        while is_our_child(pid) {
            assert!(reaped.elapsed() < Duration::from_secs(5), "never reaped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stopping = backend.clone();
        let stop = tokio::spawn(async move { stopping.stop(Duration::from_secs(1)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(backend.state(), "stopping");
        resume.send(()).unwrap();
        let status = stop.await.unwrap().unwrap();
        assert_eq!(code(status), Some(3));
        assert!(
            sent.lock().unwrap().is_empty(),
            "{:?}",
            sent.lock().unwrap()
        );
        assert_eq!(unexpected.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn of_two_stops_at_once_one_stops_and_the_other_waits() {
        let (signaller, sent) = recording();
        let backend = LocalBackend::watch(
            shell("trap 'sleep 0.2; exit 0' TERM; while :; do sleep 0.05; done"),
            signaller,
            |_, _| panic!("an asked-for exit is not unexpected"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (first, second) = tokio::join!(
            backend.stop(Duration::from_secs(5)),
            backend.stop(Duration::from_secs(5))
        );
        let outcomes = [first, second];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Err(StopError::AlreadyStopping))),
            "{outcomes:?}"
        );
        assert_eq!(backend.state(), "exited");
        assert_eq!(*sent.lock().unwrap(), [Signal::Terminate]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exit_racing_a_stop_is_recorded_once() {
        // Each backend exits on its own at about the time it is stopped:
        // its end is either the stop's or an unexpected exit, never both,
        // never neither.
        for round in 0..24u64 {
            let (signaller, _) = recording();
            let unexpected = Arc::new(AtomicUsize::new(0));
            let counted = unexpected.clone();
            let exit_ms = round % 8 * 5;
            let backend = LocalBackend::watch(
                shell(&format!("sleep 0.0{exit_ms:02}; exit 0")),
                signaller,
                move |_, _| {
                    counted.fetch_add(1, Ordering::SeqCst);
                },
            );
            tokio::time::sleep(Duration::from_millis(round % 6 * 8)).await;
            let stopped = backend.stop(Duration::from_secs(2)).await;
            // The exit callback, if any, runs right after the exit is seen.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let unexpected = unexpected.load(Ordering::SeqCst);
            match stopped {
                Ok(_) => assert_eq!(unexpected, 0, "round {round}: stopped and exited"),
                Err(StopError::AlreadyExited { .. }) => {
                    assert_eq!(unexpected, 1, "round {round}: neither")
                }
                Err(error) => panic!("round {round}: {error}"),
            }
        }
    }
}
