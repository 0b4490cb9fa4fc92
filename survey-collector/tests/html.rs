//! The HTML report as a person sees it: rendered by headless Chromium (from
//! the Debian packages, offline), screenshotted, and the picture checked
//! against the data: every chart is drawn, and its marks have the colours
//! and the proportions of the numbers behind them.
//!
//! Chromium is found as `$CHROMIUM` or `chromium` on `PATH`. Where it is not
//! installed the test reports itself ignored ("skipped: chromium not
//! found"), unless `SURVEY_REQUIRE_CHROMIUM` is set, as `.ci/run` sets it
//! after installing Chromium: then it fails. This target has its own
//! `main` (`harness = false` in Cargo.toml) so that it can say so in
//! libtest's words; it takes libtest's name filters, `--exact`, `--skip`,
//! `--ignored`, `--include-ignored` and `--list`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use survey_collector::otlp::common::v1::KeyValue;
use survey_collector::otlp::metrics::v1::Metric;
use survey_collector::render::html::{
    DECODE_COLOR, DECODE_TAIL_COLOR, EXITS_COLOR, LAUNCH_TIME_COLOR, LAUNCHES_COLOR, UPTIME_COLOR,
    reason_color, reliability_color, success_color,
};
use survey_collector::report::NO_INFERENCE_DATA;
use survey_schema::{self as schema, FailureKind};
use survey_test_support::collector::*;
use survey_test_support::otlp::*;
use survey_test_support::*;

/// The attributes of `model` on `gpu` (`None`: a CPU node).
fn attrs(model: &str, gpu: Option<&str>, bucket: &str, reason: Option<&str>) -> Vec<KeyValue> {
    let mut attrs = vec![
        kv_str("mesh_llm.model", model),
        kv_str("mesh_llm.launch_kind", "runtime_load"),
        kv_str(
            "mesh_llm.backend_device",
            if gpu.is_some() { "cuda" } else { "cpu" },
        ),
        kv_int("mesh_llm.gpu_count", i64::from(gpu.is_some())),
        kv_bool("mesh_llm.is_soc", false),
        kv_str("mesh_llm.context_bucket", bucket),
    ];
    if let Some(gpu) = gpu {
        attrs.push(kv_str("mesh_llm.gpu_name", gpu));
    }
    if let Some(reason) = reason {
        attrs.push(kv_str("mesh_llm.failure_reason", reason));
    }
    attrs
}

/// One model's history on one node.
struct History<'a> {
    model: &'a str,
    gpu: Option<&'a str>,
    bucket: &'a str,
    context: u64,
    successes: u64,
    failures: &'a [(&'a str, u64)],
    exits: u64,
    launch_ms: f64,
    uptime_s: f64,
}

impl History<'_> {
    fn metrics(&self) -> Vec<Metric> {
        let (start, time) = (at(DAY, 0), at(DAY, 12));
        let a = |reason| attrs(self.model, self.gpu, self.bucket, reason);
        let failures: u64 = self.failures.iter().map(|(_, n)| n).sum();
        let mut metrics = vec![
            cumulative(
                schema::LAUNCH_TOTAL,
                a(None),
                start,
                time,
                self.successes + failures,
            ),
            cumulative(
                schema::LAUNCH_SUCCESS_TOTAL,
                a(None),
                start,
                time,
                self.successes,
            ),
            gauge(schema::MODEL_CONTEXT_LENGTH, a(None), time, self.context),
            histogram(
                schema::LAUNCH_DURATION_MS,
                a(None),
                start,
                time,
                &vec![self.launch_ms; self.successes as usize],
            ),
        ];
        for (reason, n) in self.failures {
            metrics.push(cumulative(
                schema::LAUNCH_FAILURE_TOTAL,
                a(Some(reason)),
                start,
                time,
                *n,
            ));
        }
        if self.exits > 0 {
            metrics.push(cumulative(
                schema::EXIT_UNEXPECTED_TOTAL,
                a(None),
                start,
                time,
                self.exits,
            ));
            metrics.push(histogram(
                schema::UPTIME_S,
                a(None),
                start,
                time,
                &vec![self.uptime_s; self.exits as usize],
            ));
        }
        metrics
    }
}

/// One model's requests on one node (`prompt_shape_metrics = true`).
struct Serving<'a> {
    model: &'a str,
    gpu: Option<&'a str>,
    bucket: &'a str,
    ok: u64,
    backend_errors: u64,
    decode: &'a [f64],
}

impl Serving<'_> {
    fn metrics(&self) -> Vec<Metric> {
        let (start, time) = (at(DAY, 0), at(DAY, 12));
        let a = without_attr(
            attrs(self.model, self.gpu, self.bucket, None),
            "mesh_llm.launch_kind",
        );
        let mut metrics = Vec::new();
        for (outcome, n) in [("ok", self.ok), ("backend_error", self.backend_errors)] {
            if n > 0 {
                let with_outcome =
                    with_attr(a.clone(), kv_str("mesh_llm.request_outcome", outcome));
                metrics.push(cumulative(
                    schema::INFERENCE_REQUESTS_TOTAL,
                    with_outcome,
                    start,
                    time,
                    n,
                ));
            }
        }
        if !self.decode.is_empty() {
            metrics.push(histogram(
                schema::INFERENCE_DECODE_TOKENS_PER_S,
                a,
                start,
                time,
                self.decode,
            ));
        }
        metrics
    }
}

/// `$CHROMIUM`, or `chromium` on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// Renders `html` to a PNG screenshot, without network.
fn screenshot(chromium: &Path, dir: &Path, html: &Path) -> PathBuf {
    let png = dir.join("report.png");
    let profile = dir.join("profile");
    let args: Vec<String> = vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.display()),
        "--force-device-scale-factor=1".into(),
        "--force-color-profile=srgb".into(),
        "--hide-scrollbars".into(),
        "--window-size=1000,3200".into(),
        format!("--screenshot={}", png.display()),
        format!("file://{}", html.display()),
    ];
    // Without a network namespace where one can be made: nothing can leave.
    let offline = Command::new("unshare").args(["-n", "true"]).status();
    let mut command = if offline.is_ok_and(|s| s.success()) {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(chromium);
        c
    } else {
        Command::new(chromium)
    };
    let output = command.args(&args).output().expect("chromium runs");
    assert!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    png
}

/// A decoded screenshot.
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Picture {
    fn load(path: &Path) -> Picture {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        let rgb = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Picture {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    fn count(&self, color: [u8; 3]) -> usize {
        self.rgb.iter().filter(|p| **p == color).count()
    }

    /// Solid rectangles of `color` at least `min_height` tall, as
    /// (top, left, width, height), top to bottom.
    fn bars(&self, color: [u8; 3], min_height: usize) -> Vec<(usize, usize, usize, usize)> {
        // Runs per row, then stacked into rectangles.
        let mut open: BTreeMap<(usize, usize), (usize, usize)> = BTreeMap::new();
        let mut done = Vec::new();
        for y in 0..=self.height {
            let mut runs = Vec::new();
            if y < self.height {
                let row = &self.rgb[y * self.width..(y + 1) * self.width];
                let mut x = 0;
                while x < self.width {
                    if row[x] == color {
                        let start = x;
                        while x < self.width && row[x] == color {
                            x += 1;
                        }
                        runs.push((start, x - start));
                    } else {
                        x += 1;
                    }
                }
            }
            let mut next = BTreeMap::new();
            for run in runs {
                let (top, height) = open.remove(&run).map_or((y, 1), |(t, h)| (t, h + 1));
                next.insert(run, (top, height));
            }
            for ((left, width), (top, height)) in std::mem::replace(&mut open, next) {
                if height >= min_height {
                    done.push((top, left, width, height));
                }
            }
        }
        done.sort();
        done
    }
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// The height of the bars, as the page draws them: the `height` of the
/// first `rect` filled with `color`.
fn bar_height(html: &str, color: &str) -> usize {
    let fill = format!("fill=\"{color}\"");
    let rect = html
        .split("<rect ")
        .skip(1)
        .map(|rect| &rect[..rect.find("/>").unwrap_or(rect.len())])
        .find(|rect| rect.contains(&fill))
        .unwrap_or_else(|| panic!("no bar of {color} in the page"));
    let height = &rect[rect.find("height=\"").expect("a height") + "height=\"".len()..];
    height[..height.find('"').unwrap()].parse().unwrap()
}

/// Widths of the bars of `color`, `bar` pixels high, top to bottom.
fn widths(picture: &Picture, color: &str, bar: usize) -> Vec<usize> {
    picture
        .bars(rgb(color), bar)
        .into_iter()
        .filter(|b| b.3 == bar)
        .map(|b| b.2)
        .collect()
}

/// `a / b` is `expected` within one pixel of rounding on either bar.
fn ratio(a: usize, b: usize, expected: f64) {
    let (a, b) = (a as f64, b as f64);
    let low = (a - 1.0) / (b + 1.0);
    let high = (a + 1.0) / (b - 1.0);
    assert!(
        (low..=high).contains(&expected),
        "{a} / {b} = {} but the data says {expected}",
        a / b
    );
}

/// The one test of this target.
const TEST: &str = "the_html_report_draws_the_data";

/// What the command line asks of the test, in libtest's terms.
enum Wanted {
    /// `--list`: the test's line if it is selected, else nothing.
    List {
        selected: bool,
    },
    Test,
    FilteredOut,
}

fn wanted(args: &[String]) -> Wanted {
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let (mut exact, mut list, mut only_ignored) = (false, false, false);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => list = true,
            "--exact" => exact = true,
            "--ignored" => only_ignored = true,
            "--skip" => skips.extend(args.next().cloned()),
            // libtest's options that take a value.
            "--test-threads" | "--format" | "--color" | "--logfile" | "--shuffle-seed" | "-Z" => {
                args.next();
            }
            flag if flag.starts_with('-') => {}
            filter => filters.push(filter.to_string()),
        }
    }
    let matches = |pattern: &String| {
        if exact {
            pattern == TEST
        } else {
            TEST.contains(pattern.as_str())
        }
    };
    // The test is not ignored by default: `--ignored` leaves it out.
    let selected = !only_ignored
        && !skips.iter().any(matches)
        && (filters.is_empty() || filters.iter().any(matches));
    match (list, selected) {
        (true, selected) => Wanted::List { selected },
        (false, true) => Wanted::Test,
        (false, false) => Wanted::FilteredOut,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let began = Instant::now();
    let summary = |result: &str, passed: u32, failed: u32, ignored: u32, filtered: u32| {
        println!(
            "\ntest result: {result}. {passed} passed; {failed} failed; {ignored} ignored; \
             0 measured; {filtered} filtered out; finished in {:.2}s\n",
            began.elapsed().as_secs_f64()
        );
    };
    match wanted(&args) {
        Wanted::List { selected } => {
            if selected {
                println!("{TEST}: test");
            }
            return ExitCode::SUCCESS;
        }
        Wanted::FilteredOut => {
            println!("\nrunning 0 tests");
            summary("ok", 0, 0, 0, 1);
            return ExitCode::SUCCESS;
        }
        Wanted::Test => {}
    }
    println!("\nrunning 1 test");
    let Some(chromium) = chromium() else {
        if std::env::var_os("SURVEY_REQUIRE_CHROMIUM").is_some() {
            println!("test {TEST} ... FAILED");
            println!(
                "\nfailures:\n\n---- {TEST} ----\n\
                 SURVEY_REQUIRE_CHROMIUM is set but no chromium was found \
                 ($CHROMIUM, or chromium on PATH)\n\nfailures:\n    {TEST}"
            );
            summary("FAILED", 0, 1, 0, 0);
            return ExitCode::from(101);
        }
        println!(
            "test {TEST} ... ignored, skipped: chromium not found (apt-get install chromium, \
             or set $CHROMIUM)"
        );
        summary("ok", 0, 0, 1, 0);
        return ExitCode::SUCCESS;
    };
    let passed = std::panic::catch_unwind(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(the_html_report_draws_the_data(chromium))
    })
    .is_ok();
    if passed {
        println!("test {TEST} ... ok");
        summary("ok", 1, 0, 0, 0);
        ExitCode::SUCCESS
    } else {
        println!("test {TEST} ... FAILED");
        println!("\nfailures:\n    {TEST}");
        summary("FAILED", 0, 1, 0, 0);
        ExitCode::from(101)
    }
}

async fn the_html_report_draws_the_data(chromium: PathBuf) {
    let dir = TestDir::new("html");
    let server = collector(&dir).await;
    let a6000 = Some("NVIDIA RTX A6000");
    let histories = [
        // alpha on two GPU nodes: 12 launches, 8 successes, 3 spawn_failed,
        // 1 health_timeout, 2 exits: reliability (8 - 2) / 12 = 0.5.
        (
            1,
            History {
                model: "alpha",
                gpu: a6000,
                bucket: "<=8k",
                context: 8192,
                successes: 4,
                failures: &[("spawn_failed", 2)],
                exits: 1,
                launch_ms: 700.0,
                uptime_s: 120.0,
            },
        ),
        (
            2,
            History {
                model: "alpha",
                gpu: a6000,
                bucket: "<=8k",
                context: 4096,
                successes: 4,
                failures: &[("spawn_failed", 1), ("health_timeout", 1)],
                exits: 1,
                launch_ms: 700.0,
                uptime_s: 120.0,
            },
        ),
        // beta on a CPU node: 4 launches, 3 successes, 1 other: 0.75.
        (
            3,
            History {
                model: "beta",
                gpu: None,
                bucket: "16k_32k",
                context: 32768,
                successes: 3,
                failures: &[("other", 1)],
                exits: 0,
                launch_ms: 40_000.0,
                uptime_s: 0.0,
            },
        ),
        // gamma on GPU: 3 successes, 1 exit: 2 / 3.
        (
            1,
            History {
                model: "gamma",
                gpu: a6000,
                bucket: ">128k",
                context: 200_000,
                successes: 3,
                failures: &[],
                exits: 1,
                launch_ms: 7_000.0,
                uptime_s: 40_000.0,
            },
        ),
    ];
    for (node, history) in &histories {
        let answer = export(&server, &request(&Node::new(*node), history.metrics())).await;
        assert_eq!(answer.rejected(), 0, "{:?}", answer.response());
    }
    let serving = [
        // alpha: ten answers at 120 tokens/s, in (100, 150]: p50 125, p10
        // 105.
        (
            1,
            Serving {
                model: "alpha",
                gpu: a6000,
                bucket: "<=8k",
                ok: 10,
                backend_errors: 0,
                decode: &[120.0; 10],
            },
        ),
        // beta on the CPU node: ten at 15 tokens/s, in (10, 20]: p50 15,
        // p10 11.
        (
            3,
            Serving {
                model: "beta",
                gpu: None,
                bucket: "16k_32k",
                ok: 10,
                backend_errors: 1,
                decode: &[15.0; 10],
            },
        ),
        // gamma: no request answered in full, so no bar.
        (
            1,
            Serving {
                model: "gamma",
                gpu: a6000,
                bucket: ">128k",
                ok: 0,
                backend_errors: 2,
                decode: &[],
            },
        ),
    ];
    for (node, serving) in &serving {
        let answer = export(&server, &request(&Node::new(*node), serving.metrics())).await;
        assert_eq!(answer.rejected(), 0, "{:?}", answer.response());
    }
    server.shutdown().await;

    let html_path = dir.path().join("report.html");
    let status = Command::new(binaries::survey_collector())
        .args(["report", "--format", "html", "--db"])
        .arg(dir.db())
        .arg("--out")
        .arg(&html_path)
        .status()
        .unwrap();
    assert!(status.success());
    let html = std::fs::read_to_string(&html_path).unwrap();
    // Self-contained: nothing is fetched from anywhere.
    for needle in ["<script", "<img", "<link", "@import", "url(", "https://"] {
        assert!(!html.contains(needle), "{needle} in the page");
    }
    assert_eq!(
        html.matches("http://").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    assert!(html.contains("the beginning to now, UTC &middot; 3 node processes"));

    let picture = Picture::load(&screenshot(&chromium, dir.path(), &html_path));
    let bar = bar_height(&html, LAUNCHES_COLOR);

    // Most launched: alpha 12, beta 4, gamma 3, in that order.
    let launched = widths(&picture, LAUNCHES_COLOR, bar);
    assert_eq!(launched.len(), 3, "{launched:?}");
    ratio(launched[0], launched[1], 12.0 / 4.0);
    ratio(launched[1], launched[2], 4.0 / 3.0);

    // Failure rate, stacked by reason, as shares of completed launches:
    // alpha 3/12 spawn_failed + 1/12 health_timeout; beta 1/4 other.
    let spawn = widths(&picture, reason_color(FailureKind::SpawnFailed), bar);
    let timeout = widths(&picture, reason_color(FailureKind::HealthTimeout), bar);
    let other = widths(&picture, reason_color(FailureKind::Other), bar);
    assert_eq!(
        (spawn.len(), timeout.len(), other.len()),
        (1, 1, 1),
        "{spawn:?} {timeout:?} {other:?}"
    );
    ratio(spawn[0], timeout[0], 3.0);
    // alpha's 3 of 12 against beta's 1 of 4: the same share.
    ratio(spawn[0], other[0], 1.0);
    let spawn_bar = picture.bars(rgb(reason_color(FailureKind::SpawnFailed)), bar)[0];
    let timeout_bar = picture.bars(rgb(reason_color(FailureKind::HealthTimeout)), bar)[0];
    assert_eq!(spawn_bar.0, timeout_bar.0, "one bar per model");
    assert_eq!(
        spawn_bar.1 + spawn_bar.2,
        timeout_bar.1,
        "segments tile the bar"
    );
    // Legend swatches for exactly the reasons present.
    for reason in FailureKind::ALL {
        let swatches = picture
            .bars(rgb(reason_color(*reason)), 12)
            .iter()
            .filter(|b| b.2 == 12 && b.3 == 12)
            .count();
        let present = matches!(
            reason,
            FailureKind::SpawnFailed | FailureKind::HealthTimeout | FailureKind::Other
        );
        assert_eq!(swatches, usize::from(present), "{reason}");
    }

    // Reliability heatmap: a cell per model and hardware, coloured by its
    // reliability (alpha 0.5, beta 0.75, gamma 2/3).
    for p in [0.5, 0.75, 2.0 / 3.0] {
        let pixels = picture.count(rgb(&reliability_color(p)));
        assert!(pixels > 110 * 42 / 2, "reliability {p}: {pixels} pixels");
    }
    // Context heatmap: success rates alpha 8/12, beta 3/4, gamma 1.
    for rate in [8.0 / 12.0, 0.75, 1.0] {
        let pixels = picture.count(rgb(&success_color(rate)));
        assert!(pixels > 98 * 34 / 2, "success rate {rate}: {pixels} pixels");
    }

    // Exits per success: gamma 1/3 above alpha 2/8; beta none.
    let exits = widths(&picture, EXITS_COLOR, bar);
    assert_eq!(exits.len(), 2, "{exits:?}");
    ratio(exits[0], exits[1], (1.0 / 3.0) / (2.0 / 8.0));

    // Launch time and uptime on log scales: longer values, longer bars, in
    // the rows' order (beta 40 s, gamma 7 s, alpha 700 ms).
    let launch = widths(&picture, LAUNCH_TIME_COLOR, bar);
    assert_eq!(launch.len(), 3, "{launch:?}");
    assert!(launch[0] > launch[1] && launch[1] > launch[2], "{launch:?}");
    let uptime = widths(&picture, UPTIME_COLOR, bar);
    assert_eq!(uptime.len(), 2, "{uptime:?}");

    // Fastest: a bar per combination that answered in full, to its decode
    // p50, dark to its p10, on a log scale from 1 token/s: alpha 125
    // (105), beta 15 (11); gamma none.
    let tails = picture.bars(rgb(DECODE_TAIL_COLOR), bar);
    let rests = picture.bars(rgb(DECODE_COLOR), bar);
    assert_eq!((tails.len(), rests.len()), (2, 2), "{tails:?} {rests:?}");
    for (tail, rest) in tails.iter().zip(&rests) {
        assert_eq!(tail.0, rest.0, "one bar per row");
        assert_eq!(tail.1 + tail.2, rest.1, "the p50 part follows the p10 part");
    }
    assert!(tails[0].0 < tails[1].0, "alpha above beta");
    let whole = |i: usize| tails[i].2 + rests[i].2;
    let log = f64::log10;
    ratio(whole(0), whole(1), log(125.0) / log(15.0));
    ratio(tails[0].2, tails[1].2, log(105.0) / log(11.0));
    ratio(tails[0].2, whole(0), log(105.0) / log(125.0));
    // The legend shows both parts.
    for color in [DECODE_TAIL_COLOR, DECODE_COLOR] {
        let swatches = picture
            .bars(rgb(color), 12)
            .iter()
            .filter(|b| b.2 == 12 && b.3 == 12)
            .count();
        assert_eq!(swatches, 1, "{color}");
    }
    let fastest = &html[html.find("<section id=\"fastest\">").unwrap()..];
    assert!(fastest.contains("no request answered in full"), "{fastest}");

    // A window without inference data says so instead of drawing.
    let empty_path = dir.path().join("empty.html");
    let status = Command::new(binaries::survey_collector())
        .args([
            "report",
            "--format",
            "html",
            "--since",
            "2030-01-01",
            "--db",
        ])
        .arg(dir.db())
        .arg("--out")
        .arg(&empty_path)
        .status()
        .unwrap();
    assert!(status.success());
    let empty = std::fs::read_to_string(&empty_path).unwrap();
    let fastest = &empty[empty.find("<section id=\"fastest\">").unwrap()..];
    let note = format!("<p class=\"note\">{NO_INFERENCE_DATA}</p>");
    assert!(fastest.contains(&note), "{fastest}");
    assert!(!fastest.contains("<svg"), "{fastest}");
    let picture = Picture::load(&screenshot(&chromium, dir.path(), &empty_path));
    for color in [DECODE_TAIL_COLOR, DECODE_COLOR] {
        assert_eq!(picture.count(rgb(color)), 0, "{color}");
    }
}
