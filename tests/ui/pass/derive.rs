//! `#[derive(FailureReason)]`: every reason, transparent variants (tuple,
//! named, generic), structs, and a hand-written impl.
#![deny(warnings)]

use survey::{FailureKind, FailureReason};

#[derive(Debug, FailureReason)]
pub enum Every {
    #[survey(reason = "spawn_failed")]
    Spawn(std::io::Error),
    #[survey(reason = "health_timeout")]
    Timeout { after_ms: u64 },
    #[survey(reason = "exited_before_healthy")]
    Exited,
    #[survey(reason = "backend_proxy_failed")]
    Proxy,
    #[survey(reason = "capacity_rejected")]
    Capacity,
    #[survey(reason = "known_kv_cache_crash")]
    KvCache,
    #[survey(reason = "mmproj_missing")]
    Mmproj,
    #[survey(reason = "other")]
    Other,
    #[survey(transparent)]
    Inner(Inner),
    #[survey(transparent)]
    Named { source: Manual },
}

#[derive(Debug, FailureReason)]
#[survey(reason = "capacity_rejected")]
pub struct Inner;

#[derive(Debug)]
pub struct Manual;

impl FailureReason for Manual {
    fn failure_reason(&self) -> FailureKind {
        FailureKind::MmprojMissing
    }
}

#[derive(Debug, FailureReason)]
pub enum Generic<E> {
    #[survey(transparent)]
    Wrapped(E),
    #[survey(reason = "other")]
    Plain,
}

#[derive(Debug, FailureReason)]
#[survey(transparent)]
pub struct Wrapper(Every);

fn main() {
    assert_eq!(Every::Timeout { after_ms: 1 }.failure_reason(), FailureKind::HealthTimeout);
    assert_eq!(Every::Inner(Inner).failure_reason(), FailureKind::CapacityRejected);
    assert_eq!(Every::Named { source: Manual }.failure_reason(), FailureKind::MmprojMissing);
    assert_eq!(Generic::Wrapped(Inner).failure_reason(), FailureKind::CapacityRejected);
    assert_eq!(Generic::<Inner>::Plain.failure_reason(), FailureKind::Other);
    assert_eq!(Wrapper(Every::KvCache).failure_reason(), FailureKind::KnownKvCacheCrash);
    let _ = (Every::Spawn(std::io::Error::other("x")), Every::Exited, Every::Proxy, Every::Capacity, Every::Mmproj, Every::Other);
}
