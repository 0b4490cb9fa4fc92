//! The expansions carry no lint allowances, so a crate that forbids lints
//! and denies warnings compiles.
#![forbid(unreachable_code, unsafe_code, unused_must_use)]
#![deny(warnings)]

pub struct Spec;

impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[derive(Debug, survey::FailureReason)]
pub enum Error {
    #[survey(reason = "spawn_failed")]
    Spawn,
    #[survey(transparent)]
    Kind(survey::FailureKind),
}

#[survey::launch(kind = "startup", model = spec)]
pub async fn load(spec: &Spec, fail: bool) -> Result<u32, Error> {
    if fail {
        return Err(Error::Spawn);
    }
    Ok(1)
}

#[survey::unload(model = spec)]
pub async fn unload(spec: Spec) {
    drop(spec);
}

#[survey::unload(model = spec)]
pub fn unload_sync(spec: &Spec, fail: bool) -> Result<(), String> {
    if fail {
        return Err("busy".into());
    }
    Ok(())
}

#[survey::unload(model = spec)]
pub fn unload_sync_unit(spec: &Spec) {}

#[survey::exit(model = spec)]
pub fn exited(spec: &Spec) {}

fn main() {
    futures::executor::block_on(async {
        assert!(load(&Spec, true).await.is_err());
        assert_eq!(load(&Spec, false).await.unwrap(), 1);
        unload(Spec).await;
    });
    assert!(unload_sync(&Spec, true).is_err());
    unload_sync_unit(&Spec);
    exited(&Spec);
    let _ = Error::Kind(survey::FailureKind::Other);
}
