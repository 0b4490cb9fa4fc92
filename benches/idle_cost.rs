//! What survey costs a node that is doing nothing, and what it sends, before
//! (`heartbeat_secs = 0`: every interval sends) and after (the default: an
//! unchanged export waits for the hourly heartbeat), in one run:
//!
//! 1. **Wake-ups.** The voluntary context switches of each thread
//!    (read from `/proc/self/task/*/status`, Linux only) over an idle
//!    window between heartbeats, per export interval, against the same
//!    window measured first with survey switched off (`enabled = false`,
//!    what an opted-out node runs).
//! 2. **The schedule, measured.** An idle node with the interval and the
//!    heartbeat shortened by the same config keys, watched for a while: the
//!    requests that reach the collector against what the schedule says.
//! 3. **Bytes.** The gzip request body of one idle export (one model
//!    loaded) and of one after its unload; the request headers and the
//!    answer of one request; the TLS handshake of a request on a new
//!    connection (what a heartbeat costs when the collector closed the idle
//!    connection), all counted by a TCP proxy in front of the receiver.
//! 4. **Per day.** The bytes above times the exports a day holds under
//!    each schedule (below), the requests 100,000 idle nodes make a second,
//!    and the raw rows the ClickHouse exporter writes (one per data point
//!    of each export it receives).
//! 5. **Series resets.** The body after 200 distinct models were loaded
//!    and unloaded, without and with a series reset.
//!
//! Run with `cargo bench --bench idle_cost` on an otherwise idle machine.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use survey_test_support::bench::{BenchError as Error, BenchModel as Spec};
use survey_test_support::tls::Pki;
use survey_test_support::{Receiver, Request, TestDir};

/// The idle window wake-ups are counted over.
const WINDOW: Duration = Duration::from_secs(10);
/// The export interval the wake-ups are measured at.
const WAKEUP_INTERVAL_SECS: f64 = 1.0;
/// Seconds in a day.
const DAY: f64 = 86_400.0;
/// The default export interval and heartbeat.
const INTERVAL: f64 = 15.0;
const HEARTBEAT: f64 = 3_600.0;
/// Idle nodes behind one collector.
const NODES: f64 = 100_000.0;

/// Model `slot`, from its own file.
fn spec(slot: u64) -> Spec {
    Spec::new(slot, format!("/models/model-{slot}-Q4_K_M.gguf"))
}

#[survey::launch(kind = "runtime_load", model = spec)]
async fn launch(spec: &Spec) -> Result<(), Error> {
    if spec.slot == u64::MAX {
        return Err(Error::Other);
    }
    Ok(())
}

#[survey::unload(model = spec)]
async fn unload(spec: &Spec) -> Result<(), Error> {
    let _ = spec.slot;
    Ok(())
}

/// Voluntary context switches per thread of this process, by thread name
/// (several threads of one name add up).
fn switches() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let count = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_string()).or_default() += count;
    }
    out
}

/// Wake-ups per thread name over `WINDOW`, the main thread (which sleeps
/// through it) and the bench's own receiver and proxy left out. A thread
/// that ends within the window is not counted.
fn idle_wakeups() -> BTreeMap<String, u64> {
    let main = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
    let before = switches();
    std::thread::sleep(WINDOW);
    let after = switches();
    after
        .into_iter()
        .filter(|(name, _)| *name != main.trim() && !name.starts_with("otlp-receiver"))
        .map(|(name, n)| {
            let was = before.get(&name).copied().unwrap_or(0);
            (name, n.saturating_sub(was))
        })
        .collect()
}

fn config(endpoint: &str, extra: &str) -> survey::TelemetryConfig {
    toml::from_str(&format!(
        "enabled = true\nendpoint = \"{endpoint}\"\n{extra}"
    ))
    .expect("telemetry table")
}

fn start(config: &survey::TelemetryConfig) -> survey::SurveyGuard {
    let guard = survey::Setup::new(config)
        .service_version("1.0.0")
        .hardware(survey::HardwareFacts::cpu_only())
        .start();
    assert!(guard.is_enabled(), "{}", guard.status());
    guard
}

/// The two schedules compared.
const SCHEDULES: [(&str, &str); 2] = [
    ("before (heartbeat_secs = 0)", "heartbeat_secs = 0"),
    ("after (default heartbeat, 3600 s)", ""),
];

/// Wake-ups per thread while idle, per schedule; returns the total per
/// interval of each.
fn wakeups() -> Vec<f64> {
    println!(
        "## Wake-ups over {WINDOW:?} idle, one model loaded, an export interval of {WAKEUP_INTERVAL_SECS} s"
    );
    let receiver = Receiver::start();
    // The baseline: survey switched off, as an opted-out node runs it.
    let off_config: survey::TelemetryConfig = toml::from_str("enabled = false").expect("table");
    let off_guard = survey::Setup::new(&off_config)
        .hardware(survey::HardwareFacts::cpu_only())
        .start();
    assert!(!off_guard.is_enabled());
    futures::executor::block_on(launch(&spec(1))).unwrap();
    let off = idle_wakeups();
    drop(off_guard);

    let intervals = WINDOW.as_secs_f64() / WAKEUP_INTERVAL_SECS;
    let mut measured = Vec::new();
    for (label, extra) in SCHEDULES {
        let guard = start(&config(
            &receiver.endpoint(),
            &format!("export_interval_secs = {WAKEUP_INTERVAL_SECS}\ntimeout_secs = 1\n{extra}"),
        ));
        futures::executor::block_on(launch(&spec(2))).unwrap();
        // Let the first exports (the launch's, sent either way) settle.
        std::thread::sleep(Duration::from_secs(2));
        let before = guard.status();
        let on = idle_wakeups();
        let after = guard.status();
        println!(
            "\n{label}: {} exports sent, {} unchanged and not sent, over {intervals} intervals",
            after.exports_ok - before.exports_ok,
            after.exports_unchanged - before.exports_unchanged,
        );
        println!("| thread | wake-ups | per interval | with survey off |");
        println!("|---|---|---|---|");
        for (name, n) in &on {
            println!(
                "| {name} | {n} | {:.2} | {} |",
                *n as f64 / intervals,
                off.get(name).map_or("-".to_string(), |n| n.to_string())
            );
        }
        let (on_total, off_total): (u64, u64) = (on.values().sum(), off.values().sum());
        println!(
            "| all threads | {on_total} | {:.2} | {off_total} |",
            on_total as f64 / intervals,
        );
        let recorder = on.get("survey-recorder").copied().unwrap_or(0);
        println!("recorder wake-ups while idle: {recorder}");
        measured.push(on_total as f64 / intervals);
        drop(guard);
    }
    measured
}

/// Requests an idle node sends over a window, with the interval and the
/// heartbeat shortened by config: the heartbeat schedule, measured.
fn schedule() {
    const INTERVAL_S: f64 = 0.2;
    const HEARTBEAT_S: f64 = 2.0;
    const WATCH: Duration = Duration::from_secs(10);
    println!(
        "\n## The schedule, measured: an idle node watched for {WATCH:?}, \
         export_interval_secs = {INTERVAL_S}"
    );
    println!("| heartbeat_secs | requests seen | at most (one per interval, or per heartbeat) |");
    println!("|---|---|---|");
    for heartbeat in [0.0, HEARTBEAT_S] {
        let receiver = Receiver::start();
        let guard = start(&config(
            &receiver.endpoint(),
            &format!(
                "export_interval_secs = {INTERVAL_S}\ntimeout_secs = 0.2\nheartbeat_secs = {heartbeat}"
            ),
        ));
        futures::executor::block_on(launch(&spec(3))).unwrap();
        // The launch's export, then idle.
        assert!(receiver.wait_until(Duration::from_secs(5), |r| !r.is_empty()));
        std::thread::sleep(Duration::from_millis(50));
        let seen = receiver.requests().len();
        std::thread::sleep(WATCH);
        let during = receiver.requests().len() - seen;
        let expected = WATCH.as_secs_f64()
            / if heartbeat == 0.0 {
                INTERVAL_S
            } else {
                heartbeat
            };
        println!("| {heartbeat} | {during} | {expected:.0} |");
        drop(guard);
    }
}

/// A TCP proxy that counts the bytes of each direction.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            up: Arc::default(),
            down: Arc::default(),
            connections: Arc::default(),
        };
        let (up, down, connections) = (
            proxy.up.clone(),
            proxy.down.clone(),
            proxy.connections.clone(),
        );
        std::thread::Builder::new()
            .name("otlp-receiver-proxy".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(server) = TcpStream::connect(target) else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    pipe(&client, &server, up.clone());
                    pipe(&server, &client, down.clone());
                }
            })
            .unwrap();
        proxy
    }

    fn take(&self) -> (u64, u64, u64) {
        (
            self.up.swap(0, Ordering::SeqCst),
            self.down.swap(0, Ordering::SeqCst),
            self.connections.swap(0, Ordering::SeqCst),
        )
    }
}

fn pipe(from: &TcpStream, to: &TcpStream, count: Arc<AtomicU64>) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    std::thread::Builder::new()
        .name("otlp-receiver-pipe".into())
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
                count.fetch_add(n as u64, Ordering::SeqCst);
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
        .unwrap();
}

/// What one request of an idle node costs, on a new connection.
struct Costs {
    /// Gzip request body of an idle export, one model loaded.
    body: u64,
    /// The same after the model's unload.
    body_unloaded: u64,
    /// Data points in the idle export (raw rows in ClickHouse).
    points: usize,
    /// Request line and headers.
    headers: u64,
    /// Status line, headers and body of the answer.
    answer: u64,
    /// The TLS handshake (and record framing) of a request on a new
    /// connection: bytes over HTTPS minus bytes over HTTP.
    tls: u64,
}

/// A CA-signed certificate for `localhost`, the CA trusted through
/// `SSL_CERT_FILE` (set before any client is built); the CA file lives in
/// the directory returned.
fn tls_receiver() -> (Receiver, TestDir) {
    let pki = Pki::for_names("bench", &["localhost"], false);
    let ca_dir = TestDir::new("bench-ca");
    let ca_file = ca_dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    // SAFETY: set in `main` before any other thread reads the environment.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", &ca_file);
    }
    let receiver = Receiver::start_tls(pki.server_chain, pki.server_key).unwrap();
    (receiver, ca_dir)
}

/// One idle export over a new connection through a counting proxy: its
/// bytes each way and the connections made.
fn one_request(receiver: &Receiver, scheme: &str) -> (u64, u64, u64, Request) {
    let proxy = Proxy::start(receiver.addr());
    let endpoint = format!("{scheme}://localhost:{}", proxy.addr.port());
    let guard = start(&config(&endpoint, "export_interval_secs = 600"));
    futures::executor::block_on(launch(&spec(4))).unwrap();
    assert_eq!(
        guard.flush_export(Duration::from_secs(10)),
        Some(survey::sent::ExportOutcome::Sent),
        "{}",
        guard.status()
    );
    std::thread::sleep(Duration::from_millis(100));
    let (up, down, connections) = proxy.take();
    let request = receiver.requests().pop().expect("a request");
    // Unchanged: the next flush sends nothing, and the proxy sees nothing.
    assert_eq!(
        guard.flush_export(Duration::from_secs(10)),
        Some(survey::sent::ExportOutcome::Unchanged)
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(proxy.take(), (0, 0, 0), "an unchanged export sends nothing");
    drop(guard);
    (up, down, connections, request)
}

fn costs(tls: &Receiver) -> Costs {
    let plain = Receiver::start();
    let (up, down, connections, request) = one_request(&plain, "http");
    assert_eq!(connections, 1);
    let (tls_up, tls_down, _, _) = one_request(tls, "https");
    let body = request.raw_body.len() as u64;
    // The body after the unload: the idle export of a node with no model.
    let guard = start(&config(&plain.endpoint(), "export_interval_secs = 600"));
    let spec = spec(5);
    futures::executor::block_on(launch(&spec)).unwrap();
    futures::executor::block_on(unload(&spec)).unwrap();
    assert!(guard.flush(Duration::from_secs(10)));
    let body_unloaded = plain.requests().pop().unwrap().raw_body.len() as u64;
    drop(guard);
    Costs {
        body,
        body_unloaded,
        points: request.points().len(),
        headers: up - body,
        answer: down,
        tls: (tls_up + tls_down).saturating_sub(up + down),
    }
}

fn per_day(costs: &Costs, wakeups: &[f64]) {
    let exports_before = DAY / INTERVAL;
    let exports_after = DAY / HEARTBEAT;
    let kb = |bytes: f64| format!("{:.1} KB", bytes / 1e3);
    println!("\n## Per idle node-day, at the defaults (15 s interval)");
    println!(
        "Extrapolation: the bytes of one idle export, measured above, times the \
         exports an idle day holds under each schedule: every interval \
         ({exports_before:.0}) before; one per heartbeat (at most {exports_after:.0}) after, \
         as the measured schedule above shows (an unchanged export sends nothing; a \
         heartbeat goes out at the first interval at least heartbeat_secs after the \
         last accepted export). \
         The hour with one launch and one unload sends the two changed exports \
         (a loaded and an unloaded body) and no heartbeat, as neither gap between \
         accepted exports reaches an hour; before, half the day's exports hold \
         the loaded model and half do not."
    );
    println!("\n| | before (heartbeat_secs = 0) | after (default, 3600 s) |\n|---|---|---|");
    let both = |what: &str, before: String, after: String| {
        println!("| {what} | {before} | {after} |");
    };
    let body = costs.body as f64;
    both(
        "request bodies per idle node-day",
        kb(body * exports_before),
        kb(body * exports_after),
    );
    let overhead = (costs.headers + costs.answer) as f64;
    both(
        "per request: request headers + answer (HTTP)",
        format!("{} + {} B", costs.headers, costs.answer),
        format!("{} + {} B", costs.headers, costs.answer),
    );
    both(
        "per request on a new connection: TLS handshake",
        format!("{} B (connection kept: 0)", costs.tls),
        format!(
            "{} B (a heartbeat reconnects when the collector closed the idle connection)",
            costs.tls
        ),
    );
    both(
        "all bytes per idle node-day (bodies, headers, answers; TLS handshake on each heartbeat after)",
        kb((body + overhead) * exports_before),
        kb((body + overhead + costs.tls as f64) * exports_after),
    );
    let (loaded, unloaded) = (costs.body as f64, costs.body_unloaded as f64);
    both(
        "request bodies per node-day, one launch and one unload an hour",
        kb(loaded * exports_before / 2.0 + unloaded * exports_before / 2.0),
        kb((loaded + unloaded) * 24.0),
    );
    both(
        "survey wake-ups per interval, idle (all threads, measured)",
        format!("{:.2}", wakeups[0]),
        format!("{:.2}", wakeups[1]),
    );
    both(
        "requests per second at the collector, 100,000 idle nodes",
        format!("{:.0}", NODES / INTERVAL),
        format!("{:.1}", NODES / HEARTBEAT),
    );
    both(
        "raw rows per idle node-day in ClickHouse (one per data point)",
        format!("{:.0}", costs.points as f64 * exports_before),
        format!("{:.0}", costs.points as f64 * exports_after),
    );
    println!(
        "\n(one idle export: {} B of gzip body, {} data points; after the unload: {} B)",
        costs.body, costs.points, costs.body_unloaded
    );
}

/// The body size of an export made now. The first flush exports (and may
/// be followed by a series reset); the second exports what is current after
/// it.
fn bytes_of_next_export(receiver: &Receiver, guard: &survey::SurveyGuard) -> usize {
    assert!(guard.flush(Duration::from_secs(10)));
    assert!(guard.flush(Duration::from_secs(10)));
    let requests = receiver.requests();
    requests.last().expect("an export").raw_body.len()
}

fn series_resets() {
    println!("\n## Bytes per export (gzip) after 200 distinct models");
    println!("| node | bytes per export |");
    println!("|---|---|");
    for (label, reset) in [
        ("without series resets", "series_reset_secs = 0"),
        ("with series resets", "series_reset_secs = 0.5"),
    ] {
        let receiver = Receiver::start();
        let guard = start(&config(
            &receiver.endpoint(),
            &format!("export_interval_secs = 600\nheartbeat_secs = 0\n{reset}"),
        ));
        futures::executor::block_on(launch(&spec(0))).unwrap();
        bytes_of_next_export(&receiver, &guard);
        for slot in 1..=200 {
            let spec = spec(slot);
            futures::executor::block_on(launch(&spec)).unwrap();
            futures::executor::block_on(unload(&spec)).unwrap();
        }
        let after = bytes_of_next_export(&receiver, &guard);
        // A reset is due half a second after the previous one, in a later
        // second than the series' start: flush until one has happened.
        let settled = if reset.ends_with(" 0") {
            after
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            while guard.status().series_resets == 0 {
                assert!(Instant::now() < deadline, "no series reset");
                std::thread::sleep(Duration::from_millis(200));
                assert!(guard.flush(Duration::from_secs(10)));
            }
            bytes_of_next_export(&receiver, &guard)
        };
        println!(
            "| {label} ({} resets) | {settled} |",
            guard.status().series_resets
        );
        drop(guard);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours skips the run.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"idle_cost".contains(a.as_str()))
    {
        return;
    }
    let start = Instant::now();
    // Before any thread: the TLS receiver's CA goes into the environment.
    let (tls, _ca_dir) = tls_receiver();
    let wakeups = wakeups();
    schedule();
    let costs = costs(&tls);
    per_day(&costs, &wakeups);
    series_resets();
    println!("\n(measured in {:.0?})", start.elapsed());
}
