struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[derive(Debug)]
struct PlainError;

#[survey::launch(kind = "startup", model = spec)]
async fn load(spec: &Spec) -> Result<(), PlainError> {
    Err(PlainError)
}

fn main() {}
