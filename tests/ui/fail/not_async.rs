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

/// A hand-written function returning a boxed future is not an
/// `#[async_trait]` method: the launch would time only its last statement.
#[survey::launch(kind = "startup", model = spec)]
fn boxed(
    spec: &Spec,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), survey::FailureKind>> + Send>> {
    let _ = spec;
    Box::pin(async move { Ok(()) })
}

fn main() {}
