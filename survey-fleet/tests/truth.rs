//! A seeded fleet of real node processes exports through a real collector;
//! the report must recover the ground truth: exact counts where the truth
//! is exact, percentiles in the histogram bucket of the real ones, rankings,
//! and rates within their statistical tolerance of the configured ones.
//! Every question is checked, `fastest` (from the nodes' inference
//! metrics) included.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value as Json;
use survey::schema;
use survey_fleet::node::Launch;
use survey_fleet::truth::{self, Class, HARDWARE, MODELS};
use survey_test_support::TestDir;

const NODES: usize = 25;
const LAUNCHES: usize = 30;

/// The fleet's report and what really happened: run once, for every test
/// here.
fn fleet() -> &'static (Json, Vec<Launch>) {
    static FLEET: std::sync::OnceLock<(Json, Vec<Launch>)> = std::sync::OnceLock::new();
    FLEET.get_or_init(run_fleet)
}

fn run_fleet() -> (Json, Vec<Launch>) {
    let dir = TestDir::new("fleet-test");
    let truth_path = dir.join("truth.json");
    let stdout = support::stdout_of(
        Command::new(env!("CARGO_BIN_EXE_survey-fleet"))
            .args([
                "--nodes",
                &NODES.to_string(),
                "--launches",
                &LAUNCHES.to_string(),
            ])
            .args(["--seed", "11", "--format", "json", "--truth"])
            .arg(&truth_path),
    );
    let report: Json = serde_json::from_slice(&stdout).expect("the report as JSON");
    let launches: Vec<Launch> =
        serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    (report, launches)
}

/// The bucket `(lower, upper]` of `bounds` holding `value`.
fn bucket(bounds: &[f64], value: f64) -> (f64, Option<f64>) {
    match bounds.iter().position(|b| value <= *b) {
        Some(0) => (0.0, Some(bounds[0])),
        Some(i) => (bounds[i - 1], Some(bounds[i])),
        None => (bounds[bounds.len() - 1], None),
    }
}

/// The real `q`-quantile of `samples` (the smallest sample with at least
/// a share `q` of them at or below it).
fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// The report's `q`-quantile, interpolated within buckets, lies in the
/// bucket of the real one.
fn check_quantile(what: &str, reported: &Json, samples: &[f64], q: f64, bounds: &[f64]) {
    if samples.is_empty() {
        assert_eq!(reported, &Json::Null, "{what}");
        return;
    }
    let real = quantile(samples, q);
    let (lower, upper) = bucket(bounds, real);
    let value = reported
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {reported}"));
    match upper {
        Some(upper) => assert!(
            lower <= value && value <= upper,
            "{what}: reported {value}, real {real} in ({lower}, {upper}]"
        ),
        None => assert_eq!(value, lower, "{what}: real {real} past the last bound"),
    }
}

fn rows<'a>(report: &'a Json, key: &str) -> &'a Vec<Json> {
    report[key].as_array().unwrap()
}

fn n(value: usize) -> Json {
    Json::from(value as u64)
}

#[derive(Default)]
struct Counts {
    launches: usize,
    successes: usize,
    failures: usize,
    exits: usize,
    unloads: usize,
    reasons: BTreeMap<String, usize>,
    nodes: BTreeSet<usize>,
    launch_ms: Vec<f64>,
    uptime_s: Vec<f64>,
    max_context: Option<u64>,
}

impl Counts {
    fn add(&mut self, l: &Launch) {
        self.launches += 1;
        self.nodes.insert(l.node);
        match &l.failure {
            Some(reason) => {
                self.failures += 1;
                *self.reasons.entry(reason.clone()).or_default() += 1;
            }
            None => {
                self.successes += 1;
                self.launch_ms.push(l.launch_ms);
                self.uptime_s.push(l.uptime_s.unwrap());
                if l.crashed == Some(true) {
                    self.exits += 1;
                } else {
                    self.unloads += 1;
                }
                self.max_context = self.max_context.max(Some(l.context));
            }
        }
    }
}

fn group<K: Ord>(launches: &[Launch], key: impl Fn(&Launch) -> K) -> BTreeMap<K, Counts> {
    let mut groups: BTreeMap<K, Counts> = BTreeMap::new();
    for l in launches {
        groups.entry(key(l)).or_default().add(l);
    }
    groups
}

fn gpu(l: &Launch) -> Json {
    l.gpu_name.clone().map_or(Json::Null, Json::from)
}

#[test]
fn the_report_recovers_the_fleets_ground_truth() {
    let (report, launches) = fleet();
    assert_eq!(launches.len(), NODES * LAUNCHES);

    // 1. Most launched: exact counts and nodes, in order.
    let by_model = group(launches, |l| l.model.clone());
    let mut expected: Vec<(&String, &Counts)> = by_model.iter().collect();
    expected.sort_by(|a, b| b.1.launches.cmp(&a.1.launches).then(a.0.cmp(b.0)));
    let most = rows(report, "most_launched");
    assert_eq!(most.len(), expected.len());
    for (row, (model, c)) in most.iter().zip(&expected) {
        assert_eq!(row["model"], model.as_str());
        assert_eq!(row["launches"], n(c.launches), "{model}");
        assert_eq!(row["nodes"], n(c.nodes.len()), "{model}");
    }
    // The most popular model in the truth is the most launched.
    assert_eq!(most[0]["model"], MODELS[0].name);

    // 2. Failure rate: exact counts and reasons; each rate within 4 sigma
    // of the configured one; the least reliable model ranks first.
    let failure = rows(report, "failure_rate");
    assert_eq!(failure.len(), by_model.len());
    for row in failure {
        let model = row["model"].as_str().unwrap();
        let c = &by_model[model];
        assert_eq!(row["launches"], n(c.launches), "{model}");
        assert_eq!(row["successes"], n(c.successes), "{model}");
        assert_eq!(row["failures"], n(c.failures), "{model}");
        let reasons: BTreeMap<String, usize> = row["reasons"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
            .collect();
        assert_eq!(reasons, c.reasons, "{model}");
        let rate = row["failure_rate"].as_f64().unwrap();
        assert!((rate - c.failures as f64 / c.launches as f64).abs() < 1e-12);
        let spec = MODELS.iter().find(|m| m.name == model).unwrap();
        let p = truth::expected_failure_rate(spec, NODES);
        let sigma = (p * (1.0 - p) / c.launches as f64).sqrt();
        assert!(
            (rate - p).abs() <= 4.0 * sigma,
            "{model}: {rate} vs configured {p} (sigma {sigma})"
        );
    }
    let worst = MODELS
        .iter()
        .max_by(|a, b| {
            truth::expected_failure_rate(a, NODES)
                .total_cmp(&truth::expected_failure_rate(b, NODES))
        })
        .unwrap();
    assert_eq!(failure[0]["model"], worst.name);

    // Crashes per success within 4 sigma of each model's crash probability.
    for (model, c) in &by_model {
        let spec = MODELS.iter().find(|m| m.name == model.as_str()).unwrap();
        let observed = c.exits as f64 / c.successes as f64;
        let sigma = (spec.crash * (1.0 - spec.crash) / c.successes as f64).sqrt();
        assert!(
            (observed - spec.crash).abs() <= 4.0 * sigma.max(0.01),
            "{model}: {observed} exits per success vs {}",
            spec.crash
        );
    }

    // 3. Reliable hardware: exact counts per model and hardware.
    let by_hardware = group(launches, |l| {
        (
            l.model.clone(),
            l.gpu_name.clone(),
            l.backend_device.clone(),
            l.gpu_count,
        )
    });
    let reliable = rows(report, "reliable_hardware");
    assert_eq!(reliable.len(), by_hardware.len());
    for row in reliable {
        let key = (
            row["model"].as_str().unwrap().to_string(),
            row["gpu_name"].as_str().map(str::to_string),
            row["backend_device"].as_str().unwrap().to_string(),
            row["gpu_count"].as_u64().unwrap() as usize,
        );
        let c = &by_hardware[&key];
        assert_eq!(row["launches"], n(c.launches), "{key:?}");
        assert_eq!(row["successes"], n(c.successes), "{key:?}");
        assert_eq!(row["failures"], n(c.failures), "{key:?}");
        assert_eq!(row["unexpected_exits"], n(c.exits), "{key:?}");
        assert_eq!(row["nodes"], n(c.nodes.len()), "{key:?}");
        let reliability = (c.successes - c.exits) as f64 / c.launches as f64;
        assert!((row["reliability"].as_f64().unwrap() - reliability).abs() < 1e-12);
        let (low, high) = (
            row["reliability_low"].as_f64().unwrap(),
            row["reliability_high"].as_f64().unwrap(),
        );
        assert!(low <= reliability && reliability <= high, "{key:?}");
    }
    let lows: Vec<f64> = reliable
        .iter()
        .map(|r| r["reliability_low"].as_f64().unwrap())
        .collect();
    assert!(
        lows.windows(2).all(|w| w[0] >= w[1]),
        "ranked by the Wilson lower bound"
    );

    // 4. Viable context: exact counts per bucket, and the exact largest
    // context seen loaded (every success was exported while loaded).
    let by_context = group(launches, |l| {
        (
            l.model.clone(),
            gpu(l).to_string(),
            l.context_bucket.clone(),
        )
    });
    let viable = rows(report, "viable_context");
    assert_eq!(viable.len(), by_context.len());
    for row in viable {
        let key = (
            row["model"].as_str().unwrap().to_string(),
            row["gpu_name"].to_string(),
            row["context_bucket"].as_str().unwrap().to_string(),
        );
        let c = &by_context[&key];
        assert_eq!(row["launches"], n(c.launches), "{key:?}");
        assert_eq!(row["successes"], n(c.successes), "{key:?}");
        assert_eq!(row["failures"], n(c.failures), "{key:?}");
        assert_eq!(
            row["max_context"],
            c.max_context.map_or(Json::Null, Json::from),
            "{key:?}"
        );
    }

    // 5. Unstable: exact exits and successes; the median uptime lies in the
    // bucket of the real one.
    for row in rows(report, "unstable") {
        let model = row["model"].as_str().unwrap();
        let c = &by_model[model];
        assert_eq!(row["successes"], n(c.successes), "{model}");
        assert_eq!(row["unexpected_exits"], n(c.exits), "{model}");
        check_quantile(
            model,
            &row["uptime_p50_s"],
            &c.uptime_s,
            0.5,
            &schema::UPTIME_BOUNDARIES_S,
        );
    }

    // 6. Slow or short: launch-time p50/p90 of successful launches and the
    // median uptime, each in the bucket of the real one.
    let by_gpu = group(launches, |l| (l.model.clone(), gpu(l).to_string()));
    let slow = rows(report, "slow_or_short");
    assert_eq!(slow.len(), by_gpu.len());
    for row in slow {
        let key = (
            row["model"].as_str().unwrap().to_string(),
            row["gpu_name"].to_string(),
        );
        let c = &by_gpu[&key];
        let what = format!("{key:?}");
        assert_eq!(row["launches"], n(c.launches), "{what}");
        assert_eq!(row["ended"], n(c.exits + c.unloads), "{what}");
        let bounds = &schema::LAUNCH_DURATION_BOUNDARIES_MS;
        check_quantile(&what, &row["launch_p50_ms"], &c.launch_ms, 0.5, bounds);
        check_quantile(&what, &row["launch_p90_ms"], &c.launch_ms, 0.9, bounds);
        check_quantile(
            &what,
            &row["uptime_p50_s"],
            &c.uptime_s,
            0.5,
            &schema::UPTIME_BOUNDARIES_S,
        );
    }
}

/// What the truth says of one model × hardware × context bucket's
/// requests.
#[derive(Default)]
struct Served {
    requests: usize,
    ok: usize,
    nodes: BTreeSet<usize>,
    decode: Vec<f64>,
    prefill: Vec<f64>,
    ttft: Vec<f64>,
    /// The configured median decode speed of each launch's context (one
    /// per launch that served).
    configured: Vec<f64>,
}

#[test]
fn fastest_recovers_the_fleets_speeds() {
    let (report, launches) = fleet();
    let mut groups: BTreeMap<(String, String, String, String), Served> = BTreeMap::new();
    for l in launches {
        if l.requests.is_empty() {
            continue;
        }
        let key = (
            l.model.clone(),
            gpu(l).to_string(),
            l.backend_device.clone(),
            l.context_bucket.clone(),
        );
        let g = groups.entry(key).or_default();
        let model = MODELS.iter().find(|m| m.name == l.model).unwrap();
        g.configured.push(truth::decode_median(
            model,
            truth::hardware_of(l.node),
            l.context,
        ));
        g.nodes.insert(l.node);
        for r in &l.requests {
            g.requests += 1;
            if r.outcome == "ok" {
                g.ok += 1;
                g.decode.push(r.decode_tps.unwrap());
                g.prefill.push(r.prefill_tps.unwrap());
                g.ttft.extend(r.ttft_ms);
            }
        }
    }
    let served: usize = groups.values().map(|g| g.requests).sum();
    assert!(served > 1000, "{served} requests served");
    assert!(
        groups.values().any(|g| g.ok < g.requests),
        "no request failed"
    );

    // One row per combination that served, with exact counts and nodes;
    // each percentile in the bucket of the real one.
    let fastest = rows(report, "fastest");
    assert_eq!(fastest.len(), groups.len());
    let mut true_buckets = Vec::new();
    for row in fastest {
        let key = (
            row["model"].as_str().unwrap().to_string(),
            row["gpu_name"].to_string(),
            row["backend_device"].as_str().unwrap().to_string(),
            row["context_bucket"].as_str().unwrap().to_string(),
        );
        let g = &groups[&key];
        let what = format!("{key:?}");
        assert_eq!(row["requests"], n(g.requests), "{what}");
        assert_eq!(row["ok"], n(g.ok), "{what}");
        assert_eq!(row["nodes"], n(g.nodes.len()), "{what}");
        let decode = &schema::DECODE_BOUNDARIES_TPS;
        check_quantile(&what, &row["decode_tps_p50"], &g.decode, 0.5, decode);
        check_quantile(&what, &row["decode_tps_p10"], &g.decode, 0.1, decode);
        let prefill = &schema::PREFILL_BOUNDARIES_TPS;
        check_quantile(&what, &row["prefill_tps_p50"], &g.prefill, 0.5, prefill);
        let ttft = &schema::TIME_TO_FIRST_TOKEN_BOUNDARIES_MS;
        check_quantile(&what, &row["ttft_p50_ms"], &g.ttft, 0.5, ttft);
        check_quantile(&what, &row["ttft_p90_ms"], &g.ttft, 0.9, ttft);
        true_buckets
            .push((!g.decode.is_empty()).then(|| bucket(decode, quantile(&g.decode, 0.5)).0));
    }

    // Ranked as the truth ranks them: by the bucket of the real median
    // decode speed, fastest first, combinations without one last.
    assert!(
        true_buckets.windows(2).all(|w| match (w[0], w[1]) {
            (Some(a), Some(b)) => a >= b,
            (None, Some(_)) => false,
            _ => true,
        }),
        "{true_buckets:?}"
    );
    // And as the configured speeds rank them: for each model and context
    // bucket, every datacenter GPU above every consumer GPU, and every
    // consumer GPU above every CPU node.
    let class = |row: &Json| {
        HARDWARE
            .iter()
            .find(|h| h.device == row["backend_device"] && gpu_of(h) == row["gpu_name"])
            .unwrap()
            .class
    };
    let mut checked = 0;
    for (i, a) in fastest.iter().enumerate() {
        for b in &fastest[i + 1..] {
            let same = a["model"] == b["model"] && a["context_bucket"] == b["context_bucket"];
            if same && !a["decode_tps_p50"].is_null() && !b["decode_tps_p50"].is_null() {
                assert!(class(a) >= class(b), "{a} ranks above {b}");
                checked += usize::from(class(a) > class(b));
            }
        }
    }
    assert!(checked > 20, "{checked} pairs of classes compared");
    // The fastest combination is a datacenter GPU's, the slowest a CPU
    // node's, as configured.
    let configured = |row: &Json| {
        let key = (
            row["model"].as_str().unwrap().to_string(),
            row["gpu_name"].to_string(),
            row["backend_device"].as_str().unwrap().to_string(),
            row["context_bucket"].as_str().unwrap().to_string(),
        );
        groups[&key].configured.iter().copied().fold(0.0, f64::max)
    };
    let with_speed: Vec<&Json> = fastest
        .iter()
        .filter(|r| !r["decode_tps_p50"].is_null())
        .collect();
    assert_eq!(class(with_speed[0]), Class::DatacenterGpu);
    assert_eq!(class(with_speed[with_speed.len() - 1]), Class::Cpu);
    let top = with_speed.iter().map(|r| configured(r)).fold(0.0, f64::max);
    assert!(configured(with_speed[0]) >= top / 2.0, "{}", with_speed[0]);
}

fn gpu_of(hardware: &truth::Hardware) -> Json {
    hardware.gpu.map_or(Json::Null, Json::from)
}
