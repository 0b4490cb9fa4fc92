//! The node keeps a backend it could not stop listed, with its state, and
//! unloads several backends at once at shutdown, one that ignores SIGTERM
//! among them. Driven through the library with the stand-in `llama-server`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_llm::backend::launch::PortPicker;
use mesh_llm::backend::local::{Signal, Signaller};
use mesh_llm::node::{LoadRequest, Node, NodeError};
use survey_test_support::mesh::*;
use survey_test_support::*;

fn node(dir: &TestDir, signaller: Signaller) -> Node {
    library_node(dir, &binaries::standin(), PortPicker::os(), signaller)
}

/// The signals the node sends its backends, in order, with their pids.
type Sent = Arc<Mutex<Vec<(u32, Signal)>>>;

/// A node that notes every signal it sends, then delivers it.
fn signals_noted(dir: &TestDir) -> (Node, Sent) {
    let sent = Sent::default();
    let log = sent.clone();
    let node = node(
        dir,
        Signaller::new(move |pid, signal| {
            log.lock().unwrap().push((pid, signal));
            Signaller::os().send(pid, signal);
        }),
    );
    (node, sent)
}

/// Waits until the node lists no model, with this worker's other tasks
/// handed to another thread meanwhile.
fn wait_until_unlisted(node: &Node, timeout: Duration) {
    let listed = tokio::task::block_in_place(|| {
        poll(timeout, || node.status().models.is_empty().then_some(()))
    });
    assert!(listed.is_some(), "{:?}", node.status());
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
    wait_until_unlisted(&node, Duration::from_secs(10));
    let exits = node.status().unexpected_exits;
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0].name, "stuck");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_backends_at_once_one_ignoring_sigterm() {
    let dir = TestDir::new("unload-all");
    let (node, sent) = signals_noted(&dir);
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

/// A process-local stranger on a port: answers every request 200.
fn stranger_answering() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\nconnection: close\r\n\r\n{\"status\":\"ok\"}",
            );
        }
    });
    port
}

/// Hands out `first`, then ports the OS reports free.
fn first_then_free(first: u16) -> PortPicker {
    let handed = std::sync::atomic::AtomicBool::new(false);
    PortPicker::new(move || {
        if !handed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(first);
        }
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    })
}

fn node_with_ports(dir: &TestDir, binary: &std::path::Path, ports: PortPicker) -> Node {
    library_node(dir, binary, ports, Signaller::os())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_before_the_backend_binds_it_is_replaced() {
    let dir = TestDir::new("port-taken");
    let model = write_model(&dir, "m.gguf", ModelFile::default());
    // Held, never answered: the backend cannot bind it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let node = node_with_ports(&dir, &binaries::standin(), first_then_free(taken));
    let status = node.load(request(&model)).await.unwrap();
    assert_ne!(status.port, taken);
    assert_eq!(node.status().models.len(), 1);
    node.unload_all(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_answering_the_health_check_is_not_taken_for_the_backend() {
    let dir = TestDir::new("port-stranger");
    let model = write_model(&dir, "m.gguf", ModelFile::default());
    let port = stranger_answering();
    // A llama-server that, on the stranger's port, never binds at all: only
    // the stranger answers there.
    // It writes its pid before it becomes `sleep`.
    let script = dir.join("llama-server");
    let pid_file = dir.join("first-try.pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$prev\" = --port ] && port=$a; prev=$a; done\n\
             [ \"$port\" = {port} ] && echo $$ > {} && exec sleep 30\nexec {} \"$@\"\n",
            pid_file.display(),
            binaries::standin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = node_with_ports(&dir, &script, first_then_free(port));
    let status = node.load(request(&model)).await.unwrap();
    assert_ne!(status.port, port);
    // The backend on the new port is ours and healthy; the first try's
    // process is gone.
    let first_try: u32 = std::fs::read_to_string(&pid_file)
        .expect("the first try ran")
        .trim()
        .parse()
        .unwrap();
    assert!(
        !alive(first_try),
        "the first try's process {first_try} is left"
    );
    node.unload_all(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unload_whose_caller_goes_away_still_finishes() {
    // A client that hangs up mid-unload (its request future dropped) does
    // not leave the backend half-stopped: the stop runs to its end.
    let dir = TestDir::new("unload-dropped");
    let (node, sent) = signals_noted(&dir);
    let model = write_model(
        &dir,
        "stubborn.gguf",
        ModelFile {
            mode: Some("ignore-sigterm"),
            ..ModelFile::default()
        },
    );
    let loaded = node.load(request(&model)).await.unwrap();
    let hung_up = tokio::time::timeout(Duration::from_millis(100), node.unload("stubborn")).await;
    assert!(
        hung_up.is_err(),
        "the unload finished before the caller left"
    );
    wait_until_unlisted(&node, Duration::from_secs(15));
    assert!(!alive(loaded.pid));
    let signals: Vec<Signal> = sent.lock().unwrap().iter().map(|(_, s)| *s).collect();
    assert_eq!(signals, [Signal::Terminate, Signal::Kill]);
    assert!(node.status().unexpected_exits.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loads_of_one_model_at_once_launch_it_once() {
    let dir = TestDir::new("load-twice");
    let model = write_model(
        &dir,
        "twice.gguf",
        ModelFile {
            load_ms: Some(300),
            ..ModelFile::default()
        },
    );
    let node = node(&dir, Signaller::os());
    let (first, second) = tokio::join!(node.load(request(&model)), node.load(request(&model)));
    let outcomes = [first, second];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(NodeError::AlreadyLoaded(_)))),
        "{outcomes:?}"
    );
    assert_eq!(processes_mentioning("twice.gguf").len(), 1);
    node.unload_all(Duration::from_millis(300)).await;
    assert!(processes_mentioning("twice.gguf").is_empty());
}
