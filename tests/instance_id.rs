//! `service.instance.id`: a random UUID v4 per process, the same for every
//! export of the process (a restarted survey included), different in
//! another process, and the only resource attribute beside service identity
//! and the SDK.

use std::collections::BTreeMap;
use std::time::Duration;

use survey::schema;
use survey_test_support::host::*;
use survey_test_support::*;

/// Set in a child process: the endpoint it exports to.
const CHILD_ENDPOINT: &str = "SURVEY_TEST_CHILD_ENDPOINT";

/// In the parent, nothing; in a child started by
/// `each_process_has_its_own_id`, one launch exported to `CHILD_ENDPOINT`.
#[tokio::test]
async fn child_node_exports_once() {
    let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) else {
        return;
    };
    let guard = start(&endpoint, "");
    launch_as(
        survey::LaunchKind::Startup,
        &Spec::new(1, "/m/a.gguf", 4096),
    )
    .await
    .unwrap();
    assert!(guard.flush(Duration::from_secs(10)), "{}", guard.status());
}

fn instance_ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .map(|r| {
            let resource: BTreeMap<String, String> = r.resource_attributes();
            resource
                .get("service.instance.id")
                .cloned()
                .expect("every export carries service.instance.id")
        })
        .collect()
}

fn assert_v4(id: &str) {
    assert!(schema::is_uuid_v4(id), "{id}");
    assert_eq!(&id[14..15], "4", "version nibble of {id}");
    assert!(
        matches!(&id[19..20], "8" | "9" | "a" | "b"),
        "variant of {id}"
    );
}

#[test]
fn each_process_has_its_own_id() {
    let receiver = Receiver::start();
    for _ in 0..2 {
        let status = child::this_test("child_node_exports_once")
            .env(CHILD_ENDPOINT, receiver.endpoint())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let ids = instance_ids(&receiver);
    assert!(ids.len() >= 2, "{ids:?}");
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 2, "two processes, two ids: {ids:?}");
    for id in &ids {
        assert_v4(id);
    }
    // Nothing else joined the resource.
    for request in receiver.requests() {
        let keys: Vec<String> = request.resource_attributes().into_keys().collect();
        assert_eq!(keys, RESOURCE_KEYS);
    }
}

#[tokio::test]
async fn a_restarted_survey_keeps_the_process_id() {
    let _serial = serial().await;
    let receiver = Receiver::start();
    for slot in 0..2 {
        let guard = start(&receiver.endpoint(), "");
        load(&Spec::new(slot, "/m/b.gguf", 4096), Duration::ZERO, None)
            .await
            .unwrap();
        assert!(guard.flush(Duration::from_secs(10)), "{}", guard.status());
        guard.shutdown();
    }
    let ids = instance_ids(&receiver);
    assert!(ids.len() >= 2, "{ids:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_v4(&ids[0]);
}
