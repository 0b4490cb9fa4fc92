//! The user's own lints still apply to the user's function.
#![deny(dead_code)]

struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[survey::launch(kind = "startup", model = spec)]
async fn never_called(spec: &Spec) -> Result<(), survey::FailureKind> {
    Ok(())
}

fn main() {
    let _ = Spec;
}
