//! An `#[async_trait]` method is checked like an `async fn`.
use async_trait::async_trait;

struct Spec;
impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(1, "m")
    }
}

#[derive(Debug)]
struct PlainError;

#[async_trait]
trait Backend {
    async fn load(&self, spec: &Spec) -> Option<u32>;
    async fn load_unit(&self, spec: &Spec);
    async fn load_plain(&self, spec: &Spec) -> Result<(), PlainError>;
    async fn load_port(&self, spec: &Spec) -> Result<String, survey::FailureKind>;
}

struct Host;

#[async_trait]
impl Backend for Host {
    #[survey::launch(kind = "startup", model = spec)]
    async fn load(&self, spec: &Spec) -> Option<u32> {
        Some(1)
    }

    #[survey::launch(kind = "startup", model = spec)]
    async fn load_unit(&self, spec: &Spec) {}

    #[survey::launch(kind = "startup", model = spec)]
    async fn load_plain(&self, spec: &Spec) -> Result<(), PlainError> {
        Err(PlainError)
    }

    #[survey::launch(kind = "startup", model = spec)]
    async fn load_port(&self, spec: &Spec) -> Result<String, survey::FailureKind> {
        let port: u16 = 8080;
        Ok(port)
    }
}

fn main() {}
