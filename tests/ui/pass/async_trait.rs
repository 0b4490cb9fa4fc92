//! Methods of an `#[async_trait]` impl: `&self`, `&mut self` and a generic
//! method, for launch, unload and exit. The inner future's `Result` is what
//! is recorded, and the boxed future stays `Send`.
#![deny(warnings)]

use async_trait::async_trait;

pub struct Spec(pub u64);

impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.0, "m")
    }
}

#[derive(Debug, survey::FailureReason)]
pub enum Error {
    #[survey(reason = "health_timeout")]
    Timeout,
}

#[async_trait]
pub trait Backend {
    async fn load(&self, spec: &Spec) -> Result<u64, Error>;
    async fn reload(&mut self, extra: u64) -> Result<u64, Error>;
    async fn load_any<M: survey::SurveyModel + Sync>(&self, model: &M, fail: bool) -> Result<(), Error>;
    async fn unload(&self, spec: &Spec) -> Result<(), std::io::Error>;
    async fn unload_mut(&mut self);
    async fn unload_any<M: survey::SurveyModel + Send + 'static>(&self, model: M) -> Result<M, String>;
    async fn exited(&self, spec: &Spec);
}

pub struct Host {
    pub spec: Spec,
}

#[async_trait]
impl Backend for Host {
    #[survey::launch(kind = "runtime_load", model = spec)]
    async fn load(&self, spec: &Spec) -> Result<u64, Error> {
        Ok(self.spec.0 + spec.0)
    }

    #[survey::launch(kind = "startup", model = self.spec)]
    async fn reload(&mut self, extra: u64) -> Result<u64, Error> {
        self.spec.0 += extra;
        if extra == 0 {
            return Err(Error::Timeout);
        }
        Ok(self.spec.0)
    }

    #[survey::launch(kind = survey::LaunchKind::MultiModel, model = model)]
    async fn load_any<M: survey::SurveyModel + Sync>(&self, model: &M, fail: bool) -> Result<(), Error> {
        let _ = model.instance_key();
        if fail { Err(Error::Timeout) } else { Ok(()) }
    }

    #[survey::unload(model = spec)]
    async fn unload(&self, spec: &Spec) -> Result<(), std::io::Error> {
        let _ = (&self.spec, spec);
        Ok(())
    }

    #[survey::unload(model = self.spec)]
    async fn unload_mut(&mut self) {
        self.spec.0 = 0;
    }

    #[survey::unload(model = model)]
    async fn unload_any<M: survey::SurveyModel + Send + 'static>(&self, model: M) -> Result<M, String> {
        Ok(model)
    }

    #[survey::exit(model = spec)]
    async fn exited(&self, spec: &Spec) {
        let _ = (&self.spec, spec);
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let host = Host { spec: Spec(1) };
    assert_send(host.load(&Spec(2)));
    let mut host = Host { spec: Spec(1) };
    futures::executor::block_on(async {
        assert_eq!(host.load(&Spec(2)).await.unwrap(), 3);
        assert!(host.reload(0).await.is_err());
        assert_eq!(host.reload(2).await.unwrap(), 3);
        assert!(host.load_any(&Spec(4), true).await.is_err());
        host.load_any(&Spec(4), false).await.unwrap();
        host.unload(&Spec(2)).await.unwrap();
        host.unload_mut().await;
        assert_eq!(host.unload_any(Spec(5)).await.unwrap().0, 5);
        host.exited(&Spec(6)).await;
    });
}
