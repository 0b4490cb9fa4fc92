//! Inference performance, opt-in: what a host records for each request it
//! forwarded to a loaded model ([`record_inference`], [`Inference`]), and
//! the checks every number passes before it is recorded.
//!
//! Recorded only when `telemetry.prompt_shape_metrics = true` (default
//! `false`; no `OTEL_*` variable turns it on). Every value is a number the
//! backend or the host measured: token counts, times, an outcome. Nothing
//! derived from the text of a prompt or an answer (no hash, language,
//! topic or length of a message) exists in this API.
//!
//! | metric | from |
//! |---|---|
//! | `mesh_llm_inference_requests_total` | one per request, by [`RequestOutcome`] |
//! | `mesh_llm_inference_prompt_tokens` | [`Inference::prompt_tokens`] |
//! | `mesh_llm_inference_output_tokens` | [`Inference::output_tokens`] |
//! | `mesh_llm_inference_prefill_tokens_per_s` | [`Inference::prefill`]: tokens / time |
//! | `mesh_llm_inference_decode_tokens_per_s` | [`Inference::decode`]: tokens / time |
//! | `mesh_llm_inference_time_to_first_token_ms` | [`Inference::time_to_first_token`] |
//!
//! The histograms take only requests answered in full
//! ([`RequestOutcome::Ok`]), so a cut answer never skews a speed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::model::SurveyModel;
use crate::queue::Event;
pub use crate::schema::RequestOutcome;
use crate::setup::active;

/// The largest token count recorded (16 Mi tokens): more than any context
/// window; a count above it is dropped.
pub const MAX_TOKENS: u64 = 1 << 24;

/// The largest speed recorded, in tokens per second; a speed above it is
/// dropped.
pub const MAX_TOKENS_PER_S: f64 = 10_000_000.0;

/// The longest time recorded (a day); a longer time is dropped.
pub const MAX_TIME: Duration = Duration::from_secs(86_400);

/// Whether inference records are taken: survey running with
/// `prompt_shape_metrics = true`. Read first by [`record_inference`], so
/// that with the switch off a record costs one load and a branch.
pub(crate) static RECORDING: AtomicBool = AtomicBool::new(false);

/// Tokens processed in some time: a backend's measure of one phase of a
/// request (prompt processing or generation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Tokens the phase processed.
    pub tokens: u64,
    /// How long it took, in milliseconds.
    pub millis: f64,
}

impl Throughput {
    /// `tokens` processed in `millis` milliseconds.
    pub const fn new(tokens: u64, millis: f64) -> Throughput {
        Throughput { tokens, millis }
    }

    /// Tokens per second; `None` when no token was processed (nothing to
    /// measure) or the numbers give no finite, non-negative speed within
    /// [`MAX_TOKENS_PER_S`] (`Err`).
    fn per_second(self) -> Result<Option<f64>, Rejected> {
        if self.tokens == 0 {
            return Ok(None);
        }
        if self.tokens > MAX_TOKENS || !self.millis.is_finite() || self.millis <= 0.0 {
            return Err(Rejected);
        }
        let speed = self.tokens as f64 * 1000.0 / self.millis;
        if speed.is_finite() && speed <= MAX_TOKENS_PER_S {
            Ok(Some(speed))
        } else {
            Err(Rejected)
        }
    }
}

/// What one forwarded inference request measured. Fields the backend did
/// not report stay `None`: survey records what was measured and invents
/// nothing.
///
/// ```
/// use std::time::Duration;
/// use survey_runtime::inference::{Inference, RequestOutcome, Throughput};
///
/// // From llama-server's `usage` and `timings` of one answer.
/// let inference = Inference::new(RequestOutcome::Ok)
///     .prompt_tokens(67)
///     .output_tokens(16)
///     .prefill(Throughput::new(67, 2.19))
///     .decode(Throughput::new(16, 3.76))
///     .time_to_first_token(Duration::from_millis(12));
/// assert_eq!(inference.outcome, RequestOutcome::Ok);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inference {
    /// How the request ended.
    pub outcome: RequestOutcome,
    /// Tokens of the prompt, cached ones included (`usage.prompt_tokens`).
    pub prompt_tokens: Option<u64>,
    /// Tokens generated (`usage.completion_tokens`).
    pub output_tokens: Option<u64>,
    /// Prompt processing: tokens evaluated, cached ones excluded, and the
    /// time it took (`timings.prompt_n`, `timings.prompt_ms`).
    pub prefill: Option<Throughput>,
    /// Generation: tokens generated and the time it took
    /// (`timings.predicted_n`, `timings.predicted_ms`).
    pub decode: Option<Throughput>,
    /// From the request's arrival to the first event carrying content, for
    /// streamed answers only (the host's own clock).
    pub time_to_first_token: Option<Duration>,
}

impl Inference {
    /// A request that ended with `outcome`, no number measured yet.
    pub const fn new(outcome: RequestOutcome) -> Inference {
        Inference {
            outcome,
            prompt_tokens: None,
            output_tokens: None,
            prefill: None,
            decode: None,
            time_to_first_token: None,
        }
    }

    /// Sets [`Inference::prompt_tokens`].
    pub const fn prompt_tokens(mut self, tokens: u64) -> Inference {
        self.prompt_tokens = Some(tokens);
        self
    }

    /// Sets [`Inference::output_tokens`].
    pub const fn output_tokens(mut self, tokens: u64) -> Inference {
        self.output_tokens = Some(tokens);
        self
    }

    /// Sets [`Inference::prefill`].
    pub const fn prefill(mut self, prefill: Throughput) -> Inference {
        self.prefill = Some(prefill);
        self
    }

    /// Sets [`Inference::decode`].
    pub const fn decode(mut self, decode: Throughput) -> Inference {
        self.decode = Some(decode);
        self
    }

    /// Sets [`Inference::time_to_first_token`].
    pub const fn time_to_first_token(mut self, time: Duration) -> Inference {
        self.time_to_first_token = Some(time);
        self
    }

    /// The values to record, each checked; and how many were dropped for
    /// being out of bounds. A request not answered in full records its
    /// outcome only.
    pub(crate) fn checked(&self) -> (Measured, u64) {
        if self.outcome != RequestOutcome::Ok {
            return (Measured::outcome(self.outcome), 0);
        }
        let mut rejected = 0;
        let mut keep = |value: Result<Option<f64>, Rejected>| {
            value.unwrap_or_else(|Rejected| {
                rejected += 1;
                None
            })
        };
        let tokens = |n: Option<u64>| match n {
            Some(n) if n > MAX_TOKENS => Err(Rejected),
            n => Ok(n.map(|n| n as f64)),
        };
        let measured = Measured {
            outcome: self.outcome,
            prompt_tokens: keep(tokens(self.prompt_tokens)),
            output_tokens: keep(tokens(self.output_tokens)),
            prefill_tps: keep(self.prefill.map_or(Ok(None), Throughput::per_second)),
            decode_tps: keep(self.decode.map_or(Ok(None), Throughput::per_second)),
            time_to_first_token_ms: keep(match self.time_to_first_token {
                Some(time) if time > MAX_TIME => Err(Rejected),
                time => Ok(time.map(|t| t.as_nanos() as f64 / 1e6)),
            }),
        };
        (measured, rejected)
    }
}

/// A value out of its bounds.
struct Rejected;

/// The checked values of one request, as the instruments take them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measured {
    pub outcome: RequestOutcome,
    pub prompt_tokens: Option<f64>,
    pub output_tokens: Option<f64>,
    pub prefill_tps: Option<f64>,
    pub decode_tps: Option<f64>,
    pub time_to_first_token_ms: Option<f64>,
}

impl Measured {
    const fn outcome(outcome: RequestOutcome) -> Measured {
        Measured {
            outcome,
            prompt_tokens: None,
            output_tokens: None,
            prefill_tps: None,
            decode_tps: None,
            time_to_first_token_ms: None,
        }
    }
}

/// What happened to inference records besides being recorded.
#[derive(Debug, Default)]
pub(crate) struct InferenceCounters {
    /// Records whose model was no longer loaded when the request ended.
    pub unloaded: AtomicU64,
    /// Values out of their bounds, dropped.
    pub values_rejected: AtomicU64,
}

/// Records one inference request that `model`, a loaded instance, answered
/// (or failed to): one count by outcome and, for a request answered in
/// full, its numbers. Bounded and never blocking, like every record; with
/// `prompt_shape_metrics` off (the default) it records nothing and costs
/// one atomic load and a branch.
///
/// The attributes are those of the instance's launch (model, hardware,
/// context bucket), found in survey's registry of loaded instances by
/// [`SurveyModel::instance_key`]; a model no longer loaded records nothing
/// and is counted in [`Status`](crate::Status). A value out of its bounds
/// (not finite, negative, above [`MAX_TOKENS`], [`MAX_TOKENS_PER_S`] or
/// [`MAX_TIME`]) is dropped and counted; the rest of the request is still
/// recorded.
#[inline]
pub fn record_inference<M: SurveyModel + ?Sized>(model: &M, inference: Inference) {
    if !RECORDING.load(Ordering::Relaxed) {
        return;
    }
    record(model, inference);
}

#[inline(never)]
fn record<M: SurveyModel + ?Sized>(model: &M, inference: Inference) {
    let Some(active) = active() else { return };
    let Some(counters) = active.inference() else {
        return;
    };
    let Some(loaded) = active.registry.get(model.instance_key()) else {
        counters.unloaded.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (measured, rejected) = inference.checked();
    if rejected > 0 {
        counters
            .values_rejected
            .fetch_add(rejected, Ordering::Relaxed);
    }
    active.push(Event::Inference {
        facts: loaded.facts.clone(),
        measured,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Inference {
        Inference::new(RequestOutcome::Ok)
    }

    #[test]
    fn speeds_come_from_tokens_over_time() {
        let (measured, rejected) = ok()
            .prompt_tokens(67)
            .output_tokens(16)
            .prefill(Throughput::new(50, 250.0))
            .decode(Throughput::new(16, 400.0))
            .time_to_first_token(Duration::from_millis(260))
            .checked();
        assert_eq!(rejected, 0);
        assert_eq!(
            measured,
            Measured {
                outcome: RequestOutcome::Ok,
                prompt_tokens: Some(67.0),
                output_tokens: Some(16.0),
                prefill_tps: Some(200.0),
                decode_tps: Some(40.0),
                time_to_first_token_ms: Some(260.0),
            }
        );
    }

    #[test]
    fn nothing_measured_records_nothing_and_rejects_nothing() {
        // All cached: no prompt token evaluated, so no prefill speed.
        let (measured, rejected) = ok().prefill(Throughput::new(0, 0.0)).checked();
        assert_eq!(
            (measured, rejected),
            (Measured::outcome(RequestOutcome::Ok), 0)
        );
    }

    #[test]
    fn values_out_of_bounds_are_dropped_and_counted_one_by_one() {
        let cases = [
            ok().prefill(Throughput::new(10, 0.0)),
            ok().prefill(Throughput::new(10, -1.0)),
            ok().decode(Throughput::new(10, f64::NAN)),
            ok().decode(Throughput::new(10, f64::INFINITY)),
            // 10 tokens in a nanosecond: ten billion tokens a second.
            ok().decode(Throughput::new(10, 1e-6)),
            ok().decode(Throughput::new(MAX_TOKENS + 1, 1e9)),
            ok().prompt_tokens(MAX_TOKENS + 1),
            ok().output_tokens(u64::MAX),
            ok().time_to_first_token(MAX_TIME + Duration::from_millis(1)),
        ];
        for case in cases {
            let (measured, rejected) = case.checked();
            assert_eq!(rejected, 1, "{case:?}");
            assert_eq!(measured, Measured::outcome(RequestOutcome::Ok), "{case:?}");
        }
        // The good values of a request are kept beside a bad one.
        let (measured, rejected) = ok()
            .prompt_tokens(MAX_TOKENS)
            .decode(Throughput::new(1, f64::NAN))
            .time_to_first_token(MAX_TIME)
            .checked();
        assert_eq!(rejected, 1);
        assert_eq!(measured.prompt_tokens, Some(MAX_TOKENS as f64));
        assert_eq!(measured.time_to_first_token_ms, Some(86_400_000.0));
        assert_eq!(measured.decode_tps, None);
    }

    #[test]
    fn requests_not_answered_in_full_record_their_outcome_only() {
        for outcome in RequestOutcome::ALL.iter().copied() {
            let inference = Inference::new(outcome)
                .prompt_tokens(5)
                .output_tokens(3)
                .decode(Throughput::new(3, 30.0))
                .time_to_first_token(Duration::from_millis(5));
            let (measured, rejected) = inference.checked();
            assert_eq!(rejected, 0);
            if outcome == RequestOutcome::Ok {
                assert_eq!(measured.decode_tps, Some(100.0));
            } else {
                assert_eq!(measured, Measured::outcome(outcome));
            }
        }
    }
}
