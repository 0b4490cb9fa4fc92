//! Signatures stay verbatim: receivers, generics, lifetimes, `impl Trait` in
//! argument and return position, `where` clauses, parameters whose names a
//! naive expansion would shadow, and every launch kind.
#![deny(warnings)]

use std::fmt::Display;

pub struct Spec(pub u64);

impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.0, "m")
    }
}

#[derive(Debug, survey::FailureReason)]
pub enum Error {
    #[survey(reason = "spawn_failed")]
    Spawn,
}

pub struct Host {
    pub spec: Spec,
}

impl Host {
    #[survey::launch(kind = "startup", model = self.spec)]
    pub async fn start(&self) -> Result<u64, Error> {
        Ok(self.spec.0)
    }

    #[survey::launch(kind = "multi_model", model = self.spec)]
    pub async fn start_mut(&mut self, extra: u64) -> Result<u64, Error> {
        self.spec.0 += extra;
        Ok(self.spec.0)
    }

    #[survey::launch(kind = "moe_fallback", model = spec)]
    pub async fn with_lifetimes<'a, 'b: 'a>(&'a self, spec: &'b Spec, name: &'a str) -> Result<&'a str, Error> {
        let _ = spec;
        Ok(name)
    }

    #[survey::unload(model = self.spec)]
    pub async fn stop(self) -> Result<(), std::io::Error> {
        Ok(())
    }
}

#[survey::launch(kind = "moe_shard", model = spec)]
pub async fn generic<T, S>(spec: &S, value: T) -> Result<impl Display, Error>
where
    T: Display + Send,
    S: survey::SurveyModel + ?Sized,
{
    Ok(value.to_string())
}

#[survey::launch(kind = "runtime_load", model = spec)]
pub async fn impl_arg(spec: &Spec, value: impl Into<u64>) -> Result<u64, Error> {
    Ok(value.into() + spec.0)
}

#[survey::launch(kind = "runtime_load", model = spec)]
pub async fn question_mark(spec: &Spec, fail: bool) -> Result<u64, Error> {
    let checked: Result<u64, Error> = if fail { Err(Error::Spawn) } else { Ok(1) };
    let value = checked?;
    if value > 10 {
        return Ok(0);
    }
    Ok(value + spec.0)
}

/// Parameters named like what other macros bind around user code.
#[survey::launch(kind = kind, model = model)]
pub async fn shadowing(kind: survey::LaunchKind, model: Spec, caller: u32, result: u32, guard: u32) -> Result<u32, Error> {
    let _ = (kind, model);
    Ok(caller + result + guard)
}

/// The spec is consumed by the body; facts were taken before it ran.
#[survey::launch(kind = "startup", model = spec)]
pub async fn consumes(spec: Spec) -> Result<Spec, Error> {
    Ok(spec)
}

#[survey::unload(model = spec)]
pub async fn unload_unit(spec: Spec) {
    drop(spec);
}

#[survey::unload(model = spec)]
pub fn unload_sync(spec: Spec) -> Result<(), String> {
    drop(spec);
    Ok(())
}

#[survey::exit(model = spec)]
pub fn exit_sync(spec: &Spec, code: i32) -> i32 {
    code
}

#[survey::exit(model = spec)]
pub async fn exit_async(spec: &Spec) {}

mod user_module_named_survey {
    #[allow(dead_code)]
    mod survey {}

    #[::survey::launch(kind = "startup", model = spec)]
    pub async fn f(spec: &super::Spec) -> Result<(), super::Error> {
        Ok(())
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let host = Host { spec: Spec(1) };
    assert_send(host.start());
    assert_send(generic(&Spec(1), 3));
    assert_send(consumes(Spec(2)));
    let _ = user_module_named_survey::f;
    let _ = futures::executor::block_on(async {
        let mut host = Host { spec: Spec(3) };
        let _ = host.start_mut(1).await;
        let _ = host.with_lifetimes(&Spec(4), "x").await;
        let _ = impl_arg(&Spec(5), 2u32).await;
        let _ = question_mark(&Spec(6), true).await;
        let _ = shadowing(survey::LaunchKind::MoeShard, Spec(7), 1, 2, 3).await;
        unload_unit(Spec(8)).await;
        let _ = unload_sync(Spec(9));
        let _ = exit_sync(&Spec(10), 1);
        exit_async(&Spec(11)).await;
        host.stop().await
    });
}

/// An exit handler returning a boxed future of its own (not an
/// `#[async_trait]` method) records when it is called, and its future
/// borrows nothing.
#[survey::exit(model = spec)]
pub fn exit_then_clean_up(
    spec: &Spec,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
    let slot = spec.0;
    Box::pin(async move {
        let _ = slot;
    })
}

