#[survey::launch(kind = "startup", model = path)]
async fn load(path: &str) -> Result<(), survey::FailureKind> {
    Ok(())
}

fn main() {}
