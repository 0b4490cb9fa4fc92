struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[survey::launch(kind = "startup", model = spec)]
async fn returns_option(spec: &Spec) -> Option<u32> {
    Some(1)
}

#[survey::launch(kind = "startup", model = spec)]
async fn returns_nothing(spec: &Spec) {}

#[survey::launch(kind = "startup", model = spec)]
async fn returns_tuple(spec: &Spec) -> (u32, u32) {
    (1, 2)
}

fn main() {}
