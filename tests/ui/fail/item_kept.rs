//! On a macro error the item is kept as written: the error is the only one
//! (no missing trait item, no unused import or variable, no unknown
//! function), even under `deny(warnings)`.
#![deny(warnings)]

use std::collections::HashMap;

struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[derive(Debug, survey::FailureReason)]
enum LaunchError {
    #[survey(reason = "spawn_failed")]
    Spawn,
    Forgotten,
}

trait Backend {
    async fn load(&self, spec: &Spec) -> Result<usize, LaunchError>;
    fn unload(&self, spec: &Spec) -> Result<(), LaunchError>;
    fn exited(&self, spec: &Spec);
}

struct Host;

impl Backend for Host {
    #[survey::launch(kind = "runtime_lod", model = spec)]
    async fn load(&self, spec: &Spec) -> Result<usize, LaunchError> {
        let models: HashMap<u32, &Spec> = HashMap::from([(1, spec)]);
        Ok(models.len())
    }

    #[survey::unload(kind = "startup", model = spec)]
    fn unload(&self, spec: &Spec) -> Result<(), LaunchError> {
        Err(LaunchError::Spawn)
    }

    #[survey::exit]
    fn exited(&self, spec: &Spec) {
        drop(spec);
    }
}

#[survey::launch(kind = "startup", model = spec)]
fn not_async(spec: &Spec) -> Result<(), LaunchError> {
    Err(LaunchError::Forgotten)
}

fn pick<A, B>(a: A, _b: B) -> A {
    a
}

/// A `model` with commas of its own is found too: no unused `spec`.
#[survey::launch(kind = "bogus", model = pick::<&Spec, u8>(spec, 0))]
async fn commas(spec: &Spec) -> Result<(), LaunchError> {
    Ok(())
}

/// Compiles although `LaunchError`'s derive failed.
#[survey::launch(kind = "startup", model = spec)]
async fn launch(spec: &Spec) -> Result<(), LaunchError> {
    Ok(())
}

fn main() {
    let _ = Host.unload(&Spec);
    Host.exited(&Spec);
    let _ = Host.load(&Spec);
    let _ = not_async(&Spec);
    let _ = launch(&Spec);
    let _ = commas(&Spec);
}
