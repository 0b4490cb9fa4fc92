//! The node keeps a backend it could not stop listed, with its state, and
//! unloads several backends at once at shutdown, one that ignores SIGTERM
//! among them. Driven through the library with the stand-in `llama-server`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_llm::inference::launch::BackendSettings;
use mesh_llm::runtime::local::{Signal, Signaller};
use mesh_llm::runtime::{LoadRequest, Node, NodeError, NodeSettings};
use support::*;

fn node(dir: &TestDir, signaller: Signaller) -> Node {
    Node::new(
        NodeSettings {
            backend: BackendSettings {
                binary: STANDIN.into(),
                log_dir: dir.path.clone(),
                health_timeout: Duration::from_secs(20),
                memory_budget: u64::MAX,
            },
            unload_grace: Duration::from_millis(300),
            signaller,
        },
        || "survey: off".to_string(),
    )
}

fn request(path: &std::path::Path) -> LoadRequest {
    LoadRequest {
        model: path.display().to_string(),
        ctx_size: None,
        mmproj: None,
        gpu_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_cannot_be_stopped_stays_listed_as_unkillable() {
    let dir = TestDir::new("unkillable");
    let model = write_model(&dir, "stuck.gguf", ModelFile::default());
    // Signals that never arrive: the process outlives SIGKILL.
    let node = node(&dir, Signaller::new(|_, _| {}));
    let loaded = node.load(request(&model)).await.unwrap();
    let error = node.unload("stuck").await.unwrap_err();
    assert!(matches!(error, NodeError::Stop(_)), "{error}");
    let status = node.status();
    assert_eq!(status.models.len(), 1, "{status:?}");
    assert_eq!(status.models[0].state, "unkillable");
    assert!(alive(loaded.pid));
    // A second load of the same model waits for the first to be gone.
    assert!(matches!(
        node.load(request(&model)).await,
        Err(NodeError::AlreadyLoaded(_))
    ));
    // When it does end, outside the node's hands, it is an exit, recorded
    // once, and it leaves the list.
    signal(loaded.pid, libc::SIGKILL);
    let gone = Instant::now();
    while !node.status().models.is_empty() {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "{:?}",
            node.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exits = node.status().unexpected_exits;
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0].name, "stuck");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_backends_at_once_one_ignoring_sigterm() {
    let dir = TestDir::new("unload-all");
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    let node = node(
        &dir,
        Signaller::new(move |pid, signal| {
            log.lock().unwrap().push((pid, signal));
            Signaller::os().send(pid, signal);
        }),
    );
    let mut pids = Vec::new();
    for (name, mode) in [("a", None), ("b", Some("ignore-sigterm")), ("c", None)] {
        let model = write_model(
            &dir,
            &format!("{name}.gguf"),
            ModelFile {
                mode,
                ..ModelFile::default()
            },
        );
        pids.push(node.load(request(&model)).await.unwrap().pid);
    }
    node.unload_all(Duration::from_millis(300)).await;
    assert!(node.status().models.is_empty(), "{:?}", node.status());
    assert!(node.status().unexpected_exits.is_empty());
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} survived");
    }
    // Only the one ignoring SIGTERM was killed; all were asked once, at
    // once: every SIGTERM went out before the SIGKILL (one at a time, the
    // third would have waited for the second's grace period and SIGKILL).
    let sent = sent.lock().unwrap().clone();
    let signals: Vec<Signal> = sent.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        signals,
        [
            Signal::Terminate,
            Signal::Terminate,
            Signal::Terminate,
            Signal::Kill
        ],
        "{sent:?}"
    );
    assert_eq!(sent[3].0, pids[1]);
}
