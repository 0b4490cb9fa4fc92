//! Heartbeats: an export whose points equal those the collector last
//! accepted is not sent until `heartbeat_secs` has passed; anything that
//! changed goes out at the next interval; a failed or partly rejected
//! export is never taken as accepted; the final export is sent only when
//! something changed; and everything that shows exports says which were
//! left out. Decoded by the in-repo OTLP receiver.

use std::time::{Duration, Instant};

use survey::schema;
use survey::sent::ExportOutcome;
use survey_test_support::host::*;
use survey_test_support::*;

const FLUSH: Duration = Duration::from_secs(10);

/// Every point of `request` but its times, sorted.
fn content(request: &Request) -> Vec<String> {
    let mut lines: Vec<String> = request.points().iter().map(Point::without_start).collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn an_idle_node_sends_one_export_per_heartbeat_and_says_so() {
    let (_serial, receiver, guard) =
        exporting("export_interval_secs = 0.1\ntimeout_secs = 0.1\nheartbeat_secs = 1").await;
    one_launch().await;
    assert!(receiver.wait_until(FLUSH, |r| {
        r.iter()
            .any(|r| total(&r.points(), schema::LAUNCH_TOTAL) == 1.0)
    }));
    let seen = receiver.requests().len();
    let watch = Instant::now();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let requests = receiver.requests();
    let idle = &requests[seen..];
    // 35 intervals, three heartbeats (35 with heartbeat_secs = 0).
    assert!(
        (2..=4).contains(&idle.len()),
        "{} requests in {:?}",
        idle.len(),
        watch.elapsed()
    );
    for heartbeat in idle {
        assert_eq!(content(heartbeat), content(&requests[seen - 1]));
    }
    let status = guard.status();
    assert!(status.exports_unchanged >= 20, "{status}");
    assert!(
        status.to_string().contains(&format!(
            "unchanged (not sent) {}",
            status.exports_unchanged
        )),
        "{status}"
    );
    // What the last export was: left out, since when, the heartbeat.
    let last = wait_until_async("an export left out", FLUSH, || {
        // survey::last_export() is the guard's.
        survey::last_export()
            .filter(|e| e.outcome == ExportOutcome::Unchanged)
            .filter(|_| guard.last_export().is_some())
    })
    .await;
    let unchanged = last.unchanged.expect("since when");
    assert!(unchanged.heartbeat_in_secs <= 1, "{unchanged:?}");
    let text = unchanged.to_string();
    assert!(
        text.starts_with("unchanged since ") && text.contains(" UTC, not sent; heartbeat in "),
        "{text}"
    );
    drop(guard);
}

#[tokio::test]
async fn a_change_is_sent_at_the_next_interval() {
    let (_serial, receiver, guard) =
        exporting("export_interval_secs = 0.5\ntimeout_secs = 0.5").await;
    one_launch().await;
    assert!(receiver.wait_until(FLUSH, |r| !r.is_empty()));
    // Idle for a few intervals: nothing is sent (the heartbeat is an hour).
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let seen = receiver.requests().len();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(receiver.requests().len(), seen, "nothing while idle");
    assert!(guard.status().exports_unchanged >= 2);
    // A launch, an unload, an exit: each out within one interval.
    for step in 0..3u64 {
        let spec = Spec::new(10 + step, "/m/c.gguf", 4096);
        let changed = Instant::now();
        match step {
            0 => {
                load(&spec, Duration::ZERO, None).await.unwrap();
            }
            1 => unload(Running::new(10, "/m/c.gguf")).await.unwrap(),
            _ => {
                let _ = load(&spec, Duration::ZERO, Some(LaunchError::Spawn)).await;
            }
        }
        let before = receiver.requests().len();
        assert!(receiver.wait_until(FLUSH, |r| r.len() > before));
        assert!(
            changed.elapsed() < Duration::from_millis(500 + 400),
            "step {step}: {:?}",
            changed.elapsed()
        );
    }
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 3.0);
    assert_eq!(total(&points, schema::UNLOAD_TOTAL), 1.0);
    assert_eq!(total(&points, schema::LAUNCH_FAILURE_TOTAL), 1.0);
    // An explicit flush says whether it sent: unchanged, left out; a
    // change, sent at once.
    assert_eq!(guard.flush_export(FLUSH), Some(ExportOutcome::Unchanged));
    let before = receiver.requests().len();
    load(&Spec::new(20, "/m/d.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(guard.flush_export(FLUSH), Some(ExportOutcome::Sent));
    let requests = receiver.requests();
    assert_eq!(
        total(
            &requests[before..].last().unwrap().points(),
            schema::LAUNCH_TOTAL
        ),
        4.0
    );
    drop(guard);
}

#[tokio::test]
async fn failed_and_partly_rejected_exports_are_not_accepted_and_are_sent_again_in_full() {
    let _serial = serial().await;
    for mode in [Mode::Reject(2), Mode::Status(500, None)] {
        let receiver = Receiver::start();
        receiver.set_mode(mode.clone());
        let guard = start(
            &receiver.endpoint(),
            "export_interval_secs = 0.1\ntimeout_secs = 0.1",
        );
        one_launch().await;
        // Unchanged, yet sent every interval: none was accepted.
        assert!(
            receiver.wait_until(FLUSH, |r| r.len() >= 4),
            "{mode:?}: {}",
            guard.status()
        );
        let requests = receiver.requests();
        assert!(
            requests[1..]
                .iter()
                .all(|r| content(r) == content(&requests[1]))
        );
        assert_eq!(guard.status().exports_unchanged, 0, "{mode:?}");
        // Accepted once: then left out.
        receiver.set_mode(Mode::Accept);
        wait_until_async("an accepted export", FLUSH, || {
            (guard.status().exports_ok >= 1).then_some(())
        })
        .await;
        wait_until_async("an export left out", FLUSH, || {
            (guard.status().exports_unchanged >= 1).then_some(())
        })
        .await;
        let seen = receiver.requests().len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(receiver.requests().len(), seen, "{mode:?}: nothing more");
        drop(guard);
    }
}

#[tokio::test]
async fn the_final_export_is_sent_only_when_something_changed() {
    let _serial = serial().await;
    // Nothing sent yet: the final export is.
    let (receiver, guard) = launched_once().await;
    let report = guard.shutdown();
    assert!(report.flushed, "{report:?}");
    assert_eq!(receiver.requests().len(), 1, "never sent: sent");

    // Sent, then unchanged: left out.
    let (receiver, guard) = launched_once().await;
    assert_eq!(guard.flush_export(FLUSH), Some(ExportOutcome::Sent));
    let report = guard.shutdown();
    assert!(report.flushed, "{report:?}");
    assert_eq!(receiver.requests().len(), 1, "unchanged: left out");

    // Sent, then changed: sent.
    let (receiver, guard) = launched_once().await;
    assert_eq!(guard.flush_export(FLUSH), Some(ExportOutcome::Sent));
    unload(Running::new(1, "/m/Qwen3-8B-Q4_K_M.gguf"))
        .await
        .unwrap();
    let report = guard.shutdown();
    assert!(report.flushed, "{report:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "changed: sent");
    assert_eq!(total(&requests[1].points(), schema::UNLOAD_TOTAL), 1.0);
}

#[tokio::test]
async fn only_exports_sent_and_accepted_start_a_series_reset() {
    let (_serial, receiver, guard) = exporting("export_interval_secs = 0.1\ntimeout_secs = 0.1\nseries_reset_secs = 0.8\nheartbeat_secs = 3").await;
    let started = Instant::now();
    let gone = load(&Spec::new(1, "/m/gone.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    unload(gone).await.unwrap();
    assert!(receiver.wait_until(FLUSH, |r| {
        r.iter()
            .any(|r| total(&r.points(), schema::UNLOAD_TOTAL) == 1.0)
    }));
    // A reset is due from 0.8 s, but the exports after the unload are left
    // out: none starts it until the heartbeat is sent.
    tokio::time::sleep(Duration::from_millis(2_000).saturating_sub(started.elapsed())).await;
    let status = guard.status();
    assert_eq!(status.series_resets, 0, "{status}");
    assert!(status.exports_unchanged >= 5, "{status}");
    wait_until_async("a series reset after the heartbeat", FLUSH, || {
        (guard.status().series_resets >= 1).then_some(())
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    // The new series are sent at the next interval: no count is lost.
    let resets_seen = receiver.requests().len();
    assert!(receiver.wait_until(FLUSH, |r| r.len() > resets_seen));
    let requests = receiver.requests();
    let latest = requests.last().unwrap().points();
    assert_no_point_of(&latest, "gone");
    drop(guard);
}

/// A node exporting to a fresh receiver, after one launch.
async fn launched_once() -> (Receiver, survey::SurveyGuard) {
    let receiver = Receiver::start();
    let guard = start(&receiver.endpoint(), "");
    one_launch().await;
    (receiver, guard)
}
