struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[survey::launch(kind = "startup", model = spec, kind = "runtime_load")]
async fn load(spec: &Spec) -> Result<(), survey::FailureKind> {
    Ok(())
}

#[survey::unload(model = spec, model = spec)]
async fn unload(spec: &Spec) {}

#[derive(Debug, survey::FailureReason)]
enum E {
    #[survey(reason = "other", transparent)]
    A(survey::FailureKind),
}

fn main() {}
