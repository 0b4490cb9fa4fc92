struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[survey::launch(kind = "startup", model = spec, name = "x")]
async fn load(spec: &Spec) -> Result<(), survey::FailureKind> {
    Ok(())
}

#[survey::unload(kind = "startup", model = spec)]
async fn unload(spec: &Spec) {}

fn main() {}
