//! `kind = <expression>`: any expression of type `survey::LaunchKind`,
//! including one that starts with a string literal.
#![deny(warnings)]

pub struct Spec;

impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[survey::launch(kind = "startup".parse().unwrap(), model = spec)]
pub async fn parsed(spec: &Spec) -> Result<(), survey::FailureKind> {
    Ok(())
}

#[survey::launch(model = spec, kind = "moe_shard".parse::<survey::LaunchKind>().expect("a kind"))]
pub async fn parsed_last(spec: &Spec) -> Result<(), survey::FailureKind> {
    Ok(())
}

#[survey::launch(kind = if spec.is_some() { survey::LaunchKind::RuntimeLoad } else { survey::LaunchKind::Startup }, model = Spec)]
pub async fn chosen(spec: Option<&Spec>) -> Result<(), survey::FailureKind> {
    Ok(())
}

fn main() {
    futures::executor::block_on(async {
        parsed(&Spec).await.unwrap();
        parsed_last(&Spec).await.unwrap();
        chosen(None).await.unwrap();
    });
}
