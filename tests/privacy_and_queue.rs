//! Privacy is enforced on the bytes that leave the process, and the event
//! queue drops the oldest events when full and counts them.

use std::sync::mpsc;
use std::time::Duration;

use survey::schema;
use survey_test_support::host::*;
use survey_test_support::*;

/// A model whose every fact tries to smuggle something out.
struct Leaky {
    slot: u64,
    source: String,
}

impl survey::SurveyModel for Leaky {
    fn survey_facts(&self) -> survey::ModelFacts {
        // A relative path with no extension would read as an `org/repo`
        // ref; the host says it is a file.
        let facts = if self.source.starts_with("CANARYUSER/") {
            survey::ModelFacts::local_file(self.slot, &self.source)
        } else {
            survey::ModelFacts::new(self.slot, &self.source)
        };
        facts
            .architecture("llama/CANARYARCH")
            .quantization("Q4_K_M?token=CANARYQ")
            .backend("/opt/CANARYUSER/llama-server")
            .context_length(4096)
            .device(survey::DeviceFacts {
                backend_device: Some("cuda".into()),
                gpu_index: None,
                gpu_name: Some("/dev/CANARYDEV".into()),
                gpu_uuid: Some("cuda0".into()),
            })
    }
}

#[survey::launch(kind = "startup", model = model)]
async fn launch_leaky(model: &Leaky, fail: bool) -> Result<(), LaunchError> {
    if fail {
        Err(LaunchError::Other)
    } else {
        Ok(())
    }
}

#[tokio::test]
async fn canaries_in_paths_urls_and_facts_never_reach_the_wire() {
    let _serial = serial().await;
    for protocol in ["http/protobuf", "http/json"] {
        let receiver = Receiver::start();
        let guard = start(
            &receiver.endpoint(),
            &format!("compression = \"none\"\nprotocol = \"{protocol}\""),
        );
        let sources = [
            "/home/CANARYUSER/CANARYDIR/Qwen3-8B-Q4_K_M.gguf",
            "C:\\Users\\CANARYUSER\\CANARYDIR\\phi-4.gguf",
            "https://CANARYUSER:CANARYTOKEN@CANARYHOST.example/CANARYDIR/gemma.gguf?token=CANARYTOKEN",
            "~/CANARYDIR/tiny-00001-of-00002.gguf",
            "CANARYUSER/local-model",
            "https://CANARYUSER:CANARYTOKEN@CANARYHOST.example",
            "https://CANARYHOST.example/?token=CANARYTOKEN",
        ];
        for (i, source) in sources.iter().enumerate() {
            let model = Leaky {
                slot: i as u64,
                source: source.to_string(),
            };
            launch_leaky(&model, i % 2 == 1).await.unwrap_or(());
        }
        crashed(&Running {
            slot: 0,
            path: sources[0].into(),
        });
        assert!(guard.flush(Duration::from_secs(10)));
        let requests = receiver.requests();
        assert!(!requests.is_empty());
        for request in &requests {
            assert_eq!(request.header("content-encoding"), None);
            let raw = String::from_utf8_lossy(&request.raw_body);
            assert!(!raw.contains("CANARY"), "{protocol}: canary in {raw}");
        }
        let points = receiver.latest_points();
        let models: std::collections::BTreeSet<_> = points
            .iter()
            .filter_map(|p| p.attr("mesh_llm.model"))
            .collect();
        assert_eq!(
            models.into_iter().collect::<Vec<_>>(),
            ["Qwen3-8B-Q4_K_M", "gemma", "local-model", "phi-4", "tiny"]
        );
        // Dropped rather than sanitized into something misleading.
        for p in points.iter().filter(|p| p.metric != schema::LOADED_MODELS) {
            assert_eq!(p.attr("mesh_llm.gpu_name"), None);
            assert_eq!(
                p.attr("mesh_llm.gpu_stable_id"),
                None,
                "cuda0 is low entropy"
            );
            assert_eq!(p.attr("mesh_llm.architecture"), None);
            assert_eq!(p.attr("mesh_llm.backend"), None);
        }
        for p in &points {
            for key in p.attributes.keys() {
                assert!(
                    schema::AttributeKey::ALL.iter().any(|k| k.as_str() == key),
                    "{key} is not in the allowlist"
                );
            }
        }
        drop(guard);
    }
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_events_and_counts_them() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    // Hold the recorder on its hardware probe so events pile up.
    let (release, hold) = mpsc::channel::<()>();
    let guard = setup(&receiver.endpoint(), "queue_size = 3")
        .hardware_probe(move || {
            let _ = hold.recv();
            two_gpus()
        })
        .start();
    // Five launches of five models: ten events, in order
    // started(1), finished(1), ..., started(5), finished(5).
    for slot in 1..=5 {
        load(
            &Spec::new(slot, &format!("/m/model{slot}.gguf"), 4096),
            Duration::ZERO,
            None,
        )
        .await
        .unwrap();
    }
    assert_eq!(guard.status().events_dropped, 7);
    release.send(()).unwrap();
    assert!(guard.flush(Duration::from_secs(10)));
    let status = guard.status();
    assert_eq!((status.events_dropped, status.events_recorded), (7, 3));

    // Kept: finished(4), started(5), finished(5).
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 1.0);
    one(
        &points,
        schema::LAUNCH_TOTAL,
        &[("mesh_llm.model", "model5")],
    );
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 2.0);
    one(
        &points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[("mesh_llm.model", "model4")],
    );
    one(
        &points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[("mesh_llm.model", "model5")],
    );
    // The loaded set is kept outside the queue: all five are still loaded.
    assert_eq!(one(&points, schema::LOADED_MODELS, &[]).value, 5.0);
    drop(guard);
}
