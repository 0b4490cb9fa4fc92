//! A `mesh-llm serve` process driven from outside, as an operator would:
//! started with both APIs on free loopback ports, its output watched,
//! its command line called, stopped with SIGTERM. The tests and the
//! README's demo (`examples/demo.rs`) share it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_llm::node::NodeStatus;

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

/// How often [`poll`] calls its function.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `f` every 20 ms until it returns `Some`, for at most `timeout`;
/// `None` if it never did.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`poll`], but panics naming `what` if `f` has not returned `Some`
/// within `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("{what}: not within {timeout:?}"))
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}
