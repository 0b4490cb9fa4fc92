struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[survey::launch(kind = "startup", model = spec)]
fn load(spec: &Spec) -> Result<(), survey::FailureKind> {
    Ok(())
}

fn main() {}
