struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[survey::launch(kind = "startup", model = spec)]
async fn load(spec: &Spec) -> Result<String, survey::FailureKind> {
    let port: u16 = 8080;
    Ok(port)
}

fn main() {}
