//! The scale-out pipeline as real processes: `otelcol-survey` (the
//! Collector distribution of `deploy/otelcol/builder.yaml`, built by
//! `deploy/otelcol/build.sh`) running the shipped `config.yaml`, and the
//! ClickHouse engine (chdb) behind the test-only stand-in of ClickHouse's
//! HTTP interface (`deploy/clickhouse/standin/clickhouse_http.py`), holding
//! the shipped `schema.sql`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use survey_test_support::binaries::{target_dir, workspace};
use survey_test_support::free_port;
use survey_test_support::tls::Pki;
use survey_test_support::wait::{POLL_INTERVAL, wait_until};

/// The token the tests' nodes send, with `auth.yaml` on.
pub const TOKEN: &str = "survey-test-token-5f1c";
/// The ClickHouse user the Collector and report.py authenticate as.
pub const CLICKHOUSE_USER: &str = "survey";
/// Its password.
pub const CLICKHOUSE_PASSWORD: &str = "survey-test-password";

/// The pinned chdb's Python, the environment created if needed (once for
/// all the tests of a binary).
pub fn chdb_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let dir = target_dir().join("chdb-venv");
            let status = Command::new(workspace().join("deploy/clickhouse/venv.sh"))
                .arg(&dir)
                .status()
                .expect("deploy/clickhouse/venv.sh runs");
            assert!(
                status.success(),
                "deploy/clickhouse/venv.sh could not create the chdb environment in {}",
                dir.display()
            );
            dir.join("bin/python")
        })
        .clone()
}

/// `otelcol-survey`, built if its sources changed (once for all the tests
/// of a binary). Needs Go; `.ci/run` builds it before the tests.
pub fn otelcol_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let output = Command::new(workspace().join("deploy/otelcol/build.sh"))
                .env("CARGO_TARGET_DIR", target_dir())
                .stderr(Stdio::inherit())
                .output()
                .expect("deploy/otelcol/build.sh runs (it needs Go)");
            assert!(
                output.status.success(),
                "deploy/otelcol/build.sh could not build otelcol-survey"
            );
            PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
        })
        .clone()
}

/// Sends SIGTERM (or `signal`) to `child` and waits for it to end.
fn signal_and_wait(child: &mut Child, signal: &str) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status();
    child.wait().unwrap()
}

/// ClickHouse for the tests: chdb behind the HTTP stand-in, its data in a
/// folder that outlives the process (stop and start it again on the same
/// port and folder, as a restarted server).
pub struct ClickHouse {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl ClickHouse {
    /// Starts the stand-in on a fresh database in `dir`, with schema.sql.
    pub fn start(dir: &Path) -> ClickHouse {
        std::fs::create_dir_all(dir).unwrap();
        let mut clickhouse = ClickHouse {
            child: None,
            dir: dir.to_path_buf(),
            port: 0,
        };
        clickhouse.run();
        clickhouse
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("clickhouse.log"))
            .unwrap();
        let mut child = Command::new(chdb_python())
            .arg(workspace().join("deploy/clickhouse/standin/clickhouse_http.py"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--path")
            .arg(self.dir.join("data"))
            .arg("--schema")
            .arg(workspace().join("deploy/clickhouse/schema.sql"))
            .arg("--user")
            .arg(CLICKHOUSE_USER)
            .arg("--password")
            .arg(CLICKHOUSE_PASSWORD)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the ClickHouse stand-in starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address: SocketAddr = line
            .trim()
            .strip_prefix("listening http://")
            .unwrap_or_else(|| {
                panic!(
                    "the stand-in said {line:?}; its log: {}",
                    std::fs::read_to_string(self.dir.join("clickhouse.log")).unwrap_or_default()
                )
            })
            .parse()
            .unwrap();
        self.port = address.port();
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT`, the same across a restart.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM): its port refuses connections until [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = signal_and_wait(&mut child, "TERM");
            assert!(status.success(), "the stand-in ended with {status}");
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        self.run();
    }

    /// The rows `sql` gives (run with ClickHouse query parameters
    /// `params`), read as JSON objects.
    pub fn rows(&self, sql: &str, params: &[(&str, String)]) -> Vec<Json> {
        let mut url = reqwest::Url::parse(&self.url()).unwrap();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("default_format", "JSONEachRow");
            query.append_pair("output_format_json_quote_64bit_integers", "0");
            for (name, value) in params {
                query.append_pair(&format!("param_{name}"), value);
            }
        }
        let answer = reqwest::blocking::Client::new()
            .post(url)
            .header("X-ClickHouse-User", CLICKHOUSE_USER)
            .header("X-ClickHouse-Key", CLICKHOUSE_PASSWORD)
            .body(sql.to_string())
            .timeout(Duration::from_secs(120))
            .send()
            .expect("the stand-in answers");
        let status = answer.status();
        let text = answer.text().unwrap();
        assert!(status.is_success(), "{status}: {text}\nfor: {sql}");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The distinct (node, metric, start second, time second) of the rows
    /// stored, as [`point_groups`] reads them from what the Collector took.
    pub fn point_groups(&self) -> std::collections::BTreeSet<(String, String, u64, u64)> {
        let tables = [
            "otel_metrics_sum",
            "otel_metrics_gauge",
            "otel_metrics_histogram",
        ];
        let union = tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT ResourceAttributes['service.instance.id'] AS n, MetricName AS m,
                            toUInt64(toUnixTimestamp(StartTimeUnix)) AS s,
                            toUInt64(toUnixTimestamp(TimeUnix)) AS t FROM survey.{t}"
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        self.rows(&format!("SELECT DISTINCT n, m, s, t FROM ({union})"), &[])
            .into_iter()
            .map(|r| {
                (
                    r["n"].as_str().unwrap().to_string(),
                    r["m"].as_str().unwrap().to_string(),
                    r["s"].as_u64().unwrap(),
                    r["t"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Rows the exporter wrote in its three tables, of node `node` (its
    /// `service.instance.id`) or of all.
    pub fn rows_stored(&self, node: Option<&str>) -> u64 {
        let filter = node.map_or(String::new(), |id| {
            format!(" WHERE ResourceAttributes['service.instance.id'] = '{id}'")
        });
        self.number(&format!(
            "SELECT (SELECT count() FROM survey.otel_metrics_sum{filter})
                  + (SELECT count() FROM survey.otel_metrics_gauge{filter})
                  + (SELECT count() FROM survey.otel_metrics_histogram{filter}) AS n"
        ))
    }

    /// One number `sql` gives.
    pub fn number(&self, sql: &str) -> u64 {
        let rows = self.rows(sql, &[]);
        let row = rows[0].as_object().unwrap();
        row.values().next().unwrap().as_u64().unwrap()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The files a Collector's receiver serves TLS with, and the CA that signs
/// them.
pub struct Tls {
    pub ca: reqwest::Certificate,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    /// A CA and a certificate for 127.0.0.1 signed by it, in `dir`.
    pub fn create(dir: &Path) -> Tls {
        let pki = Pki::for_names("otelcol", &["127.0.0.1"], false);
        let files = pki.write(dir);
        Tls {
            ca: reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap(),
            cert: files.cert,
            key: files.key,
        }
    }

    /// A client that trusts the CA (and nothing else).
    pub fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .tls_certs_only([self.ca.clone()])
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }
}

/// `otelcol-survey` running `deploy/otelcol/config.yaml` with `auth.yaml`
/// and a test overlay: the receiver on a loopback port with TLS, the
/// batch processor's timeout short, a file exporter beside the clickhouse
/// exporter (what passed the filters, as OTLP JSON), and its own metrics
/// on a loopback port.
pub struct Collector {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    telemetry_port: u16,
    log: PathBuf,
}

impl Collector {
    /// The overlay the tests run with: `extra` (YAML) is given after it.
    fn overlay(&self) -> String {
        format!(
            r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  batch:
    timeout: 200ms
exporters:
  file:
    path: {passed}
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {telemetry}
  pipelines:
    metrics:
      exporters: [clickhouse, file]
"#,
            port = self.port,
            passed = self.passed_path().display(),
            telemetry = self.telemetry_port,
        )
    }

    /// Starts it in `dir`, writing into `clickhouse`; `extra` is one more
    /// overlay (YAML, may be empty).
    pub fn start(dir: &Path, tls: &Tls, clickhouse: &ClickHouse, extra: &str) -> Collector {
        std::fs::create_dir_all(dir).unwrap();
        let mut collector = Collector {
            child: None,
            dir: dir.to_path_buf(),
            port: free_port(),
            telemetry_port: free_port(),
            log: dir.join("otelcol.log"),
        };
        let overlay = dir.join("test-overlay.yaml");
        std::fs::write(&overlay, collector.overlay()).unwrap();
        let extra_path = dir.join("extra-overlay.yaml");
        std::fs::write(&extra_path, if extra.is_empty() { "{}\n" } else { extra }).unwrap();
        let config = workspace().join("deploy/otelcol");
        let log = std::fs::File::create(&collector.log).unwrap();
        let child = Command::new(otelcol_binary())
            .arg("--config")
            .arg(config.join("config.yaml"))
            .arg("--config")
            .arg(config.join("auth.yaml"))
            .arg("--config")
            .arg(&overlay)
            .arg("--config")
            .arg(&extra_path)
            .env("SURVEY_TLS_CERT", &tls.cert)
            .env("SURVEY_TLS_KEY", &tls.key)
            .env("SURVEY_CLICKHOUSE_ENDPOINT", clickhouse.url())
            .env("SURVEY_CLICKHOUSE_USER", CLICKHOUSE_USER)
            .env("SURVEY_CLICKHOUSE_PASSWORD", CLICKHOUSE_PASSWORD)
            .env("SURVEY_BEARER_TOKEN", TOKEN)
            .env("GOMAXPROCS", "2")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("otelcol-survey starts");
        collector.child = Some(child);
        let address: SocketAddr = format!("127.0.0.1:{}", collector.port).parse().unwrap();
        let start = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = collector.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "otelcol-survey ended with {status}: {}",
                    collector.log_text()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "otelcol-survey did not listen within 30 s: {}",
                collector.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        collector
    }

    /// `https://127.0.0.1:PORT/v1/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("https://127.0.0.1:{}/v1/metrics", self.port)
    }

    /// What it wrote to its log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The file exporter's output: what passed the filters.
    pub fn passed_path(&self) -> PathBuf {
        self.dir.join("passed.jsonl")
    }

    /// The requests that passed the filters, as OTLP JSON objects.
    pub fn passed(&self) -> Vec<Json> {
        std::fs::read_to_string(self.passed_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Its own metrics: `name{labels}` → value, summed over the series
    /// whose labels include every one of `labels`.
    pub fn telemetry(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text =
            reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", self.telemetry_port))
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.text())
                .unwrap_or_else(|e| panic!("the Collector's own metrics: {e}"));
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
                (metric == name).then_some(())?;
                let all = labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
                all.then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }

    /// Points sent by `exporter` so far, and failed.
    pub fn exported(&self, exporter: &str) -> (f64, f64) {
        let labels = [("exporter", exporter)];
        (
            self.telemetry("otelcol_exporter_sent_metric_points", &labels),
            self.telemetry("otelcol_exporter_send_failed_metric_points", &labels),
        )
    }

    /// Waits until everything it accepted has left the pipeline: the
    /// clickhouse exporter has sent what the file exporter wrote, nothing
    /// is queued, and nothing moved for a second (five batch timeouts).
    /// Returns the points sent to ClickHouse.
    pub fn drained(&self, limit: Duration) -> u64 {
        let mut last = None;
        let mut sent = 0.0;
        wait_until("the Collector to export what it accepted", limit, || {
            let clickhouse = self.exported("clickhouse");
            let file = self.exported("file");
            let queued =
                self.telemetry("otelcol_exporter_queue_size", &[("exporter", "clickhouse")]);
            let now = (clickhouse, file, queued);
            let settled =
                clickhouse.0 + clickhouse.1 == file.0 && queued == 0.0 && last == Some(now);
            last = Some(now);
            sent = clickhouse.0;
            if !settled {
                std::thread::sleep(Duration::from_secs(1) - POLL_INTERVAL);
            }
            settled.then_some(())
        });
        sent as u64
    }

    /// Stops it with `signal` ("TERM", "KILL") and returns how it ended.
    pub fn stop(&mut self, signal: &str) -> std::process::ExitStatus {
        signal_and_wait(self.child.as_mut().unwrap(), signal)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The (node, metric, start second, time second) of every data point of an
/// OTLP JSON request (the file exporter's lines): what identifies the
/// exports a point came from, to the second the exporter keeps.
pub fn point_groups(request: &Json) -> Vec<(String, String, u64, u64)> {
    let mut groups = Vec::new();
    let list =
        |v: &Json, key: &str| -> Vec<Json> { v[key].as_array().cloned().unwrap_or_default() };
    let seconds = |v: &Json| -> u64 {
        v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) / 1_000_000_000
    };
    for rm in list(request, "resourceMetrics") {
        let node = list(&rm["resource"], "attributes")
            .into_iter()
            .find(|kv| kv["key"] == "service.instance.id")
            .and_then(|kv| kv["value"]["stringValue"].as_str().map(str::to_string))
            .unwrap_or_default();
        for sm in list(&rm, "scopeMetrics") {
            for m in list(&sm, "metrics") {
                let name = m["name"].as_str().unwrap_or_default().to_string();
                let kinds = [
                    "sum",
                    "gauge",
                    "histogram",
                    "exponentialHistogram",
                    "summary",
                ];
                for kind in kinds {
                    for p in list(&m[kind], "dataPoints") {
                        groups.push((
                            node.clone(),
                            name.clone(),
                            seconds(&p["startTimeUnixNano"]),
                            seconds(&p["timeUnixNano"]),
                        ));
                    }
                }
            }
        }
    }
    groups
}
