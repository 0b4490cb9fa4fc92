//! Methods of an `#[async_trait]` impl are instrumented like `async fn`s: the
//! inner future's outcome is recorded when it is polled, and a launch future
//! dropped before it finishes counts as a failure with reason `other`.

use std::time::Duration;

use async_trait::async_trait;
use survey::schema;
use survey_test_support::host::*;
use survey_test_support::*;

const FLUSH: Duration = Duration::from_secs(10);

#[async_trait]
trait Backend {
    async fn launch(
        &self,
        spec: &Spec,
        delay: Duration,
        outcome: Option<LaunchError>,
    ) -> Result<Running, LaunchError>;

    async fn stop(&mut self, running: Running) -> Result<(), std::io::Error>;

    async fn watch<M: survey::SurveyModel + Sync>(&self, model: &M);
}

#[derive(Default)]
struct Host {
    stopped: u32,
}

#[async_trait]
impl Backend for Host {
    #[survey::launch(kind = "moe_shard", model = spec)]
    async fn launch(
        &self,
        spec: &Spec,
        delay: Duration,
        outcome: Option<LaunchError>,
    ) -> Result<Running, LaunchError> {
        launched(spec, delay, outcome).await
    }

    #[survey::unload(model = running)]
    async fn stop(&mut self, running: Running) -> Result<(), std::io::Error> {
        self.stopped += 1;
        drop(running);
        Ok(())
    }

    #[survey::exit(model = model)]
    async fn watch<M: survey::SurveyModel + Sync>(&self, model: &M) {
        let _ = model.instance_key();
    }
}

#[tokio::test]
async fn async_trait_methods_record_their_outcomes() {
    let (_serial, receiver, guard) = exporting("").await;
    let mut host = Host::default();

    let shard = Spec::new(1, "/m/shard.gguf", 4096);
    let running = host
        .launch(&shard, Duration::from_millis(30), None)
        .await
        .unwrap();
    let refused = Spec::new(2, "/m/refused.gguf", 4096);
    let error = host
        .launch(&refused, Duration::ZERO, Some(LaunchError::Capacity))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        LaunchError::Capacity,
        "the method's own error comes back"
    );
    let crashing = Spec::new(3, "/m/crashing.gguf", 4096);
    host.launch(&crashing, Duration::ZERO, None).await.unwrap();
    host.watch(&crashing).await;
    host.stop(running).await.unwrap();
    assert_eq!(host.stopped, 1);

    assert!(guard.flush(FLUSH), "{}", guard.status());
    let points = receiver.latest_points();
    assert_eq!(total(&points, schema::LAUNCH_TOTAL), 3.0);
    assert_eq!(total(&points, schema::LAUNCH_SUCCESS_TOTAL), 2.0);
    let success = one(
        &points,
        schema::LAUNCH_SUCCESS_TOTAL,
        &[("mesh_llm.model", "shard")],
    );
    assert_eq!(success.attr("mesh_llm.launch_kind"), Some("moe_shard"));
    let duration = one(
        &points,
        schema::LAUNCH_DURATION_MS,
        &[("mesh_llm.model", "shard")],
    );
    assert!(duration.sum.unwrap() >= 30.0, "{duration:?}");
    let failure = one(
        &points,
        schema::LAUNCH_FAILURE_TOTAL,
        &[("mesh_llm.model", "refused")],
    );
    assert_eq!(
        failure.attr("mesh_llm.failure_reason"),
        Some("capacity_rejected")
    );
    assert_eq!(total(&points, schema::LAUNCH_FAILURE_TOTAL), 1.0);
    let unload = one(
        &points,
        schema::UNLOAD_TOTAL,
        &[("mesh_llm.model", "shard")],
    );
    assert_eq!(unload.value, 1.0);
    let exit = one(
        &points,
        schema::EXIT_UNEXPECTED_TOTAL,
        &[("mesh_llm.model", "crashing")],
    );
    assert_eq!(exit.value, 1.0);
    assert_eq!(one(&points, schema::LOADED_MODELS, &[]).value, 0.0);
    assert!(of(&points, schema::MODEL_LOADED).is_empty());
    drop(guard);
}

#[tokio::test]
async fn a_cancelled_async_trait_launch_is_recorded_as_other() {
    let (_serial, receiver, guard) = exporting("").await;
    let host = Host::default();

    // Never polled: like an `async fn`, nothing has started.
    let never = Spec::new(8, "/m/never.gguf", 4096);
    drop(host.launch(&never, Duration::ZERO, None));
    // Polled, then dropped while it waits.
    let slow = Spec::new(7, "/m/slow.gguf", 4096);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        host.launch(&slow, Duration::from_secs(30), None),
    )
    .await;
    assert!(cancelled.is_err(), "the launch future was dropped");

    assert!(guard.flush(FLUSH));
    let points = receiver.latest_points();
    assert_cancelled_launch(&points, "slow");
    drop(guard);
}
