#[survey::launch(kind = "startup")]
async fn load() -> Result<(), survey::FailureKind> {
    Ok(())
}

fn main() {}
