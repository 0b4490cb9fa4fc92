#[survey::launch(model = survey::ModelFacts::new(1, "m"))]
async fn load() -> Result<(), survey::FailureKind> {
    Ok(())
}

fn main() {}
