//! An in-process survey-collector on a free port of 127.0.0.1 with a fresh
//! database, an HTTP client that talks to it, and its reports read back
//! (with the check that ingest's stream summaries equal rebuilt ones).

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use serde_json::Value as Json;
use survey_collector::Limits;
use survey_collector::otlp::collector::metrics::v1::ExportMetricsServiceResponse;
use survey_collector::{Day, Report, ReportOptions, ServeConfig, Server, Store};

use crate::TestDir;

/// A collector on a free port of 127.0.0.1 with a fresh database in `dir`.
pub async fn collector(dir: &TestDir) -> Server {
    collector_with(dir, Default::default(), Limits::default()).await
}

/// [`collector`] with bearer `tokens` and ingest `limits`.
pub async fn collector_with(
    dir: &TestDir,
    tokens: survey_collector::Tokens,
    limits: Limits,
) -> Server {
    serve(dir.db(), tokens, limits).await
}

/// A collector on a free port of 127.0.0.1 storing into `db`.
async fn serve(db: PathBuf, tokens: survey_collector::Tokens, limits: Limits) -> Server {
    Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        db,
        tokens,
        tls: None,
        retention: Duration::from_secs(48 * 3600),
        limits,
    })
    .await
    .expect("collector starts")
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The export response of a protobuf answer.
    pub fn response(&self) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse::decode(self.body.as_slice()).expect("export response")
    }

    /// Points rejected through `partial_success` (0 when absent).
    pub fn rejected(&self) -> i64 {
        self.response()
            .partial_success
            .map_or(0, |p| p.rejected_data_points)
    }
}

/// An HTTP client with a 30 s timeout (rustls with ring installed).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends `body` to `url` with `headers`.
pub async fn send(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut request = client().request(method, url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// POSTs an export request as protobuf to `server`'s `/v1/metrics`: the
/// collector's own message type, or any other encoding of
/// `ExportMetricsServiceRequest` (opentelemetry-proto's, as the receiver
/// decodes a node's exports).
pub async fn export(server: &Server, request: &impl Message) -> Answer {
    send(
        reqwest::Method::POST,
        &format!("{}/v1/metrics", server.endpoint()),
        &[("content-type", "application/x-protobuf")],
        request.encode_to_vec(),
    )
    .await
}

/// The JSON report of the database in `dir`.
pub fn report(dir: &TestDir, options: ReportOptions) -> Json {
    let store = Store::open_read_only(&dir.db()).expect("database");
    summaries_agree(&store, dir);
    Report::build(&store, options).expect("report").to_json()
}

/// The streams' series and summaries that ingest kept, point by point,
/// equal those rebuilt from the rollup rows (on a copy of the database).
fn summaries_agree(store: &Store, dir: &TestDir) {
    const SUMMARY: &str = "SELECT StreamId, SeriesId, FirstDay, LastDay, Whole, \
                           WholeBuckets, WholeDay FROM streams ORDER BY StreamId";
    let read = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut stmt = conn.prepare(SUMMARY).unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..7)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join(" | "))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let kept = read(store.connection());
    let copy = dir.path().join("summaries-copy.db");
    let _ = std::fs::remove_file(&copy);
    store
        .connection()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let mut rebuilt = Store::open(&copy).unwrap();
    rebuilt.summarize_all().unwrap();
    assert_eq!(kept, read(rebuilt.connection()), "summaries kept by ingest");
    drop(rebuilt);
    let _ = std::fs::remove_file(&copy);
}

/// The rows of question `key`.
pub fn rows<'a>(report: &'a Json, key: &str) -> &'a Vec<Json> {
    report[key].as_array().expect("a list of rows")
}

/// The row of `key` whose fields match `pairs`; panics otherwise.
pub fn row<'a>(report: &'a Json, key: &str, pairs: &[(&str, Json)]) -> &'a Json {
    let found: Vec<_> = rows(report, key)
        .iter()
        .filter(|r| pairs.iter().all(|(k, v)| &r[*k] == v))
        .collect();
    assert_eq!(found.len(), 1, "{key} rows with {pairs:?}: {report:#}");
    found[0]
}

/// Rows in the raw table `table`.
pub fn raw_rows(dir: &TestDir, table: &str) -> i64 {
    let store = Store::open_read_only(&dir.db()).unwrap();
    store
        .connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Rows in `streams`.
pub fn stream_rows(dir: &TestDir) -> i64 {
    raw_rows(dir, "streams")
}

/// survey-collector's JSON reports, one per window (`since`, `until` in
/// UTC days; `None`: no bound; every row kept), over `requests` sent to a
/// fresh collector with its database in `dir` (created if needed). Each
/// request must be taken whole.
pub async fn collector_reports(
    dir: &Path,
    requests: &[impl Message],
    windows: &[(Option<i64>, Option<i64>)],
) -> Vec<Json> {
    std::fs::create_dir_all(dir).expect("the collector's directory");
    let db = dir.join("survey.db");
    let server = serve(db.clone(), Default::default(), Limits::default()).await;
    for request in requests {
        let answer = export(&server, request).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.rejected(), 0, "an export was refused in part");
    }
    server.shutdown().await;
    let store = Store::open_read_only(&db).expect("database");
    windows
        .iter()
        .map(|(since, until)| {
            Report::build(
                &store,
                ReportOptions {
                    since: since.map(Day),
                    until: until.map(Day),
                    min_launches: 0,
                    min_requests: 0,
                    min_nodes: 1,
                },
            )
            .expect("report")
            .to_json()
        })
        .collect()
}

/// Sends `head` (request line and headers, without the blank line) and
/// then `body` over a plain TCP connection, and reads the answer's status
/// line; for requests a regular client will not send.
pub async fn raw_status(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Runs `survey-collector report --db DB ARGS...` and waits for it.
pub fn collector_report(db: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::binaries::survey_collector())
        .arg("report")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}
