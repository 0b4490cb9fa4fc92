//! What the proxy measures of a request it forwards, for survey's opt-in
//! inference metrics (`[telemetry] prompt_shape_metrics = true`; with it
//! off the proxy creates no meter and reads nothing of an answer).
//!
//! One meter per forwarded request records it once, through
//! `survey::record_inference`, with its outcome (decided by the proxy's
//! code path, never by text) and, from the backend's answer as it streams
//! through unchanged, the numbers llama-server reports:
//!
//! | recorded | from |
//! |---|---|
//! | prompt tokens | `usage.prompt_tokens`, else `timings.cache_n + timings.prompt_n` |
//! | output tokens | `usage.completion_tokens`, else `timings.predicted_n` |
//! | prefill speed | `timings.prompt_n` / `timings.prompt_ms` (cached tokens excluded) |
//! | decode speed | (`timings.predicted_n` - 1) / `timings.predicted_ms`: llama-server starts its generation clock at the first token, which the prompt's pass produced, so `predicted_ms` spans the steps after it; a one-token answer has no decode speed (llama-server's own `predicted_per_second` counts the first token and reads fast on short answers) |
//! | time to first token | the node's clock, streamed answers only: from the moment the handler has the request (its body read whole) to the first SSE event carrying generated text (a non-empty `delta.content`, `delta.reasoning_content` or `delta.tool_calls` of a chat, `text` of a completion) read from the backend |
//!
//! A number the backend does not send stays absent: nothing is invented
//! (another OpenAI-compatible server without `timings` gives the outcome,
//! the time to first token and `usage`).
//!
//! What it keeps, and for how long: of a whole (non-SSE) answer, a copy of
//! at most [`MAX_WHOLE`] bytes until the answer ends, parsed then and
//! dropped (`usage` and `timings` come after `choices`, in any key order);
//! a larger answer is not read and records its outcome only. Of an SSE
//! answer, the event being received (at most [`MAX_EVENT`] bytes; a longer
//! one is skipped), dropped once dispatched. Until the first token is seen
//! each event is parsed for it (the generated text is checked for being
//! non-empty, never copied) and for numbers. After it, nothing is parsed
//! while the answer streams: the last two events are kept (each at most
//! [`MAX_EVENT`] bytes, the older one dropped as a new one ends), and at
//! `data: [DONE]` those that name a `"usage"` or `"timings"` key are
//! parsed: llama-server and other OpenAI-compatible servers send their
//! numbers on the last one or two events (the `finish_reason` chunk, and
//! the `include_usage` chunk). Across events only numbers are kept: the
//! latest `usage` and `timings` seen. Nothing read is logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use survey::{Inference, ModelFacts, RequestOutcome, Throughput};

/// The longest SSE event read (its `data:` lines together), in bytes.
pub const MAX_EVENT: usize = 64 << 10;

/// The largest whole answer read, in bytes.
pub const MAX_WHOLE: usize = 1 << 20;

/// Where a finished request goes: `survey::record_inference` but in unit
/// tests.
pub(crate) type Record = Arc<dyn Fn(&ModelFacts, Inference) + Send + Sync>;

/// The recorder of the node: survey.
pub(crate) fn to_survey() -> Record {
    Arc::new(|model: &ModelFacts, inference| survey::record_inference(model, inference))
}

/// Measures one forwarded request and records it exactly once: when the
/// proxy's code path decides its outcome ([`Meter::finish`],
/// [`Meter::answer_ended`]), or when dropped before that (the client went
/// away: `client_cancelled`, unless the answer was complete).
pub(crate) struct Meter {
    /// The loaded instance the request went to (its key is the launch's).
    model: Arc<ModelFacts>,
    record: Record,
    reader: Reader,
    seen: Seen,
    recorded: bool,
}

/// How the answer is read.
enum Reader {
    /// No answer yet.
    NotBegun,
    /// An SSE answer.
    Events(EventScanner),
    /// A whole answer, copied up to [`MAX_WHOLE`]; `None` past it.
    Whole(Option<Vec<u8>>),
}

/// What was seen of an answer: numbers, and whether it was complete.
struct Seen {
    accepted: Instant,
    usage: Option<Usage>,
    timings: Option<Timings>,
    first_token: Option<Duration>,
    /// Answered in full: `data: [DONE]` seen, or a whole body ended.
    complete: bool,
    /// After the first token: the data of the last two events, older
    /// first, read at `[DONE]`.
    last_events: [Vec<u8>; 2],
}

impl Meter {
    /// A request to `model`, accepted at `accepted`.
    pub(crate) fn new(model: Arc<ModelFacts>, record: Record, accepted: Instant) -> Meter {
        Meter {
            model,
            record,
            reader: Reader::NotBegun,
            seen: Seen {
                accepted,
                usage: None,
                timings: None,
                first_token: None,
                complete: false,
                last_events: Default::default(),
            },
            recorded: false,
        }
    }

    /// The backend's answer begins (a 2xx status): SSE events, or a whole
    /// body.
    pub(crate) fn answer_begins(&mut self, events: bool) {
        self.reader = if events {
            Reader::Events(EventScanner::default())
        } else {
            Reader::Whole(Some(Vec::new()))
        };
    }

    /// A piece of the answer, as it passes through.
    pub(crate) fn read(&mut self, bytes: &[u8]) {
        let seen = &mut self.seen;
        match &mut self.reader {
            Reader::NotBegun | Reader::Whole(None) => {}
            Reader::Whole(Some(copy)) => {
                if copy.len() + bytes.len() > MAX_WHOLE {
                    self.reader = Reader::Whole(None);
                } else {
                    copy.extend_from_slice(bytes);
                }
            }
            Reader::Events(scanner) => {
                // Past the first token, a piece that is one whole event
                // (llama-server writes an event a piece) is kept as it is,
                // without the scanner's line splitting.
                if seen.first_token.is_some()
                    && scanner.is_between_events()
                    && let Some(data) = one_event(bytes)
                {
                    seen.event(data);
                    return;
                }
                scanner.feed(bytes, |event| seen.event(event));
            }
        }
    }

    /// The backend's answer ended cleanly: `ok` if it was complete (an SSE
    /// answer must have sent `data: [DONE]`), else `backend_error`.
    pub(crate) fn answer_ended(&mut self) {
        if let Reader::Whole(copy) = &mut self.reader {
            if let Some(copy) = copy.take()
                && let Ok(totals) = serde_json::from_slice::<Totals>(&copy)
            {
                self.seen.usage = totals.usage;
                self.seen.timings = totals.timings;
            }
            self.seen.complete = true;
        }
        self.finish(RequestOutcome::BackendError);
    }

    /// Records the request as ended by `outcome`, or as `ok` if its answer
    /// was complete already; once.
    pub(crate) fn finish(&mut self, outcome: RequestOutcome) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let outcome = if self.seen.complete {
            RequestOutcome::Ok
        } else {
            outcome
        };
        (self.record)(&self.model, self.seen.inference(outcome));
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Dropped before its end: the client hung up (the handler or the
        // answer's body was dropped).
        self.finish(RequestOutcome::ClientCancelled);
    }
}

impl Seen {
    /// One SSE event's data: before the first token, parsed for it and for
    /// numbers; after it, kept among the last two, read at `[DONE]`.
    fn event(&mut self, data: &[u8]) {
        if data == b"[DONE]" {
            self.complete = true;
            for kept in std::mem::take(&mut self.last_events) {
                if names_numbers(&kept) {
                    self.parse(&kept);
                }
            }
            return;
        }
        if self.first_token.is_some() {
            let [older, newer] = &mut self.last_events;
            std::mem::swap(older, newer);
            newer.clear();
            newer.extend_from_slice(data);
            return;
        }
        self.parse(data);
    }

    /// Reads an event's JSON: the first token, `usage`, `timings`.
    fn parse(&mut self, data: &[u8]) {
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            return;
        };
        if self.first_token.is_none() && chunk.choices.iter().any(Choice::generated) {
            self.first_token = Some(self.accepted.elapsed());
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.timings.is_some() {
            self.timings = chunk.timings;
        }
    }

    /// What survey records: for a request answered in full, the numbers
    /// seen; otherwise the outcome alone.
    fn inference(&self, outcome: RequestOutcome) -> Inference {
        let mut inference = Inference::new(outcome);
        if outcome != RequestOutcome::Ok {
            return inference;
        }
        let usage = self.usage.unwrap_or_default();
        let timings = self.timings.unwrap_or_default();
        let prompt = usage.prompt_tokens.count().or_else(|| {
            timings
                .cache_n
                .count()?
                .checked_add(timings.prompt_n.count()?)
        });
        if let Some(tokens) = prompt {
            inference = inference.prompt_tokens(tokens);
        }
        if let Some(tokens) = usage
            .completion_tokens
            .count()
            .or(timings.predicted_n.count())
        {
            inference = inference.output_tokens(tokens);
        }
        if let (Some(tokens), Some(millis)) = (timings.prompt_n.count(), timings.prompt_ms.0) {
            inference = inference.prefill(Throughput::new(tokens, millis));
        }
        if let (Some(generated), Some(millis)) =
            (timings.predicted_n.count(), timings.predicted_ms.0)
        {
            // The steps `predicted_ms` measured: those after the first
            // token (none for a one-token answer: no speed).
            let steps = generated.saturating_sub(1);
            inference = inference.decode(Throughput::new(steps, millis));
        }
        if let Some(time) = self.first_token {
            inference = inference.time_to_first_token(time);
        }
        inference
    }
}

/// Whether an event's bytes may name a `"usage"` or `"timings"` key: a
/// cheap look before a parse. A quote inside a JSON string is escaped, so
/// generated text rarely matches; when it does, it costs a parse and adds
/// no number (only the chunk's own keys are read). Bytes that are not
/// UTF-8 are no JSON: never parsed.
fn names_numbers(data: &[u8]) -> bool {
    // As text: `str::contains` searches a short needle with SIMD.
    std::str::from_utf8(data)
        .is_ok_and(|text| text.contains("\"usage\"") || text.contains("\"timings\""))
}

/// The data of a piece that is exactly one event of one `data: ` line
/// (`data: ...` and a blank line, no other line break), at most
/// [`MAX_EVENT`] bytes; `None` for any other piece, which the scanner
/// reads.
fn one_event(piece: &[u8]) -> Option<&[u8]> {
    let data = piece.strip_prefix(b"data: ")?.strip_suffix(b"\n\n")?;
    // A line may end in `\r\n`, as the scanner reads it.
    let data = data.strip_suffix(b"\r").unwrap_or(data);
    (data.len() <= MAX_EVENT && memchr::memchr(b'\n', data).is_none()).then_some(data)
}

/// Splits an SSE stream into events' data, whatever the pieces it arrives
/// in: `data:` lines joined by `\n`, an event dispatched at a blank line
/// (lines may end in `\n` or `\r\n`; other fields are ignored). Keeps only
/// the line and the event being received, each bounded by [`MAX_EVENT`].
#[derive(Default)]
struct EventScanner {
    /// The end of the last piece, not yet a whole line.
    line: Vec<u8>,
    /// The line being received is over the bound: skipped.
    line_over: bool,
    /// The data of the event being received.
    data: Vec<u8>,
    /// The event being received is over the bound: skipped.
    data_over: bool,
}

impl EventScanner {
    /// Nothing of a line or an event is pending.
    fn is_between_events(&self) -> bool {
        self.line.is_empty() && !self.line_over && self.data.is_empty() && !self.data_over
    }

    fn feed(&mut self, mut bytes: &[u8], mut dispatch: impl FnMut(&[u8])) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            let (piece, rest) = (&bytes[..end], &bytes[end + 1..]);
            if self.line.is_empty() && !self.line_over {
                self.line_ends(piece, &mut dispatch);
            } else {
                self.keep_line(piece);
                let line = std::mem::take(&mut self.line);
                if std::mem::take(&mut self.line_over) {
                    self.data_over = true;
                } else {
                    self.line_ends(&line, &mut dispatch);
                }
                self.line = line;
                self.line.clear();
            }
            bytes = rest;
        }
        self.keep_line(bytes);
    }

    fn keep_line(&mut self, piece: &[u8]) {
        if self.line_over || piece.is_empty() {
            return;
        }
        if self.line.len() + piece.len() > MAX_EVENT {
            self.line_over = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(piece);
        }
    }

    fn line_ends(&mut self, line: &[u8], dispatch: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if !self.data_over && !self.data.is_empty() {
                dispatch(&self.data);
            }
            self.data.clear();
            self.data_over = false;
        } else if let Some(data) = line.strip_prefix(b"data:") {
            let data = data.strip_prefix(b" ").unwrap_or(data);
            if self.data_over {
                return;
            }
            let joined = usize::from(!self.data.is_empty());
            if self.data.len() + joined + data.len() > MAX_EVENT {
                self.data_over = true;
                self.data = Vec::new();
                return;
            }
            if joined == 1 {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(data);
        }
    }
}

/// The numbers of a whole answer.
#[derive(Deserialize)]
struct Totals {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    timings: Option<Timings>,
}

/// The parts of an SSE chunk read.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    timings: Option<Timings>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    text: Generated,
}

impl Choice {
    fn generated(&self) -> bool {
        self.text.0
            || self
                .delta
                .as_ref()
                .is_some_and(|d| d.content.0 || d.reasoning_content.0 || d.tool_calls.0)
    }
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Generated,
    #[serde(default)]
    reasoning_content: Generated,
    #[serde(default)]
    tool_calls: Generated,
}

/// `usage`, as far as it is read.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Number,
    #[serde(default)]
    completion_tokens: Number,
}

/// `timings`, as far as they are read.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Timings {
    #[serde(default)]
    cache_n: Number,
    #[serde(default)]
    prompt_n: Number,
    #[serde(default)]
    prompt_ms: Number,
    #[serde(default)]
    predicted_n: Number,
    #[serde(default)]
    predicted_ms: Number,
}

/// A JSON number; any other value reads as absent (never an error that
/// would lose the other numbers).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Number(Option<f64>);

impl Number {
    /// As a count: a whole number, not negative.
    fn count(self) -> Option<u64> {
        self.0
            .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0 && *n < u64::MAX as f64)
            .map(|n| n as u64)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Number, D::Error> {
        struct Numbers;
        impl<'de> Visitor<'de> for Numbers {
            type Value = Number;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Number, E> {
                Ok(Number(Some(n as f64)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Number, E> {
                Ok(Number(Some(n as f64)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Number, E> {
                Ok(Number(Some(n)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Number, E> {
                Ok(Number(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Number, E> {
                Ok(Number(None))
            }
            fn visit_unit<E>(self) -> Result<Number, E> {
                Ok(Number(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Number, A::Error> {
                skip_seq(seq).map(|_| Number(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Number, A::Error> {
                skip_map(map).map(|_| Number(None))
            }
        }
        deserializer.deserialize_any(Numbers)
    }
}

/// Whether a value holds generated output: a non-empty string or array.
/// A string is looked at, never copied.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Generated(bool);

impl<'de> Deserialize<'de> for Generated {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Generated, D::Error> {
        struct Output;
        impl<'de> Visitor<'de> for Output {
            type Value = Generated;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, text: &str) -> Result<Generated, E> {
                Ok(Generated(!text.is_empty()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Generated, A::Error> {
                skip_seq(seq).map(|n| Generated(n > 0))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Generated, A::Error> {
                skip_map(map).map(|_| Generated(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Generated, E> {
                Ok(Generated(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Generated, E> {
                Ok(Generated(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Generated, E> {
                Ok(Generated(false))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Generated, E> {
                Ok(Generated(false))
            }
            fn visit_unit<E>(self) -> Result<Generated, E> {
                Ok(Generated(false))
            }
        }
        deserializer.deserialize_any(Output)
    }
}

/// Reads past a sequence; how many elements it had.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<usize, A::Error> {
    let mut n = 0;
    while seq.next_element::<IgnoredAny>()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Reads past a map.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A meter whose records land in the returned list.
    fn new_meter() -> (Meter, Arc<Mutex<Vec<Inference>>>) {
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let record: Record = Arc::new(move |_: &ModelFacts, inference| {
            sink.lock().unwrap().push(inference);
        });
        let model = Arc::new(ModelFacts::new(1u64, "m"));
        (Meter::new(model, record, Instant::now()), records)
    }

    fn only(records: &Mutex<Vec<Inference>>) -> Inference {
        let records = records.lock().unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        records[0]
    }

    const TIMINGS: &str = r#""timings":{"cache_n":20,"prompt_n":47,"prompt_ms":23.5,"prompt_per_token_ms":0.5,"prompt_per_second":2000.0,"predicted_n":16,"predicted_ms":400.0,"predicted_per_token_ms":25.0,"predicted_per_second":40.0}"#;

    /// llama-server's streamed chat without `include_usage`: role chunk,
    /// content chunks, then the finish chunk with the timings.
    fn llama_chat_stream(include_usage: bool) -> String {
        let head = r#""created":1,"id":"chatcmpl-1","model":"m","system_fingerprint":"b1","object":"chat.completion.chunk""#;
        let mut out = format!(
            "data: {{\"choices\":[{{\"finish_reason\":null,\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":null}}}}],{head}}}\n\n"
        );
        for word in ["The", " \\\"usage\\\"", " end"] {
            out.push_str(&format!(
                "data: {{\"choices\":[{{\"finish_reason\":null,\"index\":0,\"delta\":{{\"content\":\"{word}\"}}}}],{head}}}\n\n"
            ));
        }
        if include_usage {
            out.push_str(&format!(
                "data: {{\"choices\":[{{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{{}}}}],{head}}}\n\n"
            ));
            out.push_str(&format!(
                "data: {{\"choices\":[],{head},\"usage\":{{\"completion_tokens\":16,\"prompt_tokens\":67,\"total_tokens\":83}},{TIMINGS}}}\n\n"
            ));
        } else {
            out.push_str(&format!(
                "data: {{\"choices\":[{{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{{}}}}],{head},{TIMINGS}}}\n\n"
            ));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }

    /// Feeds `body` to a fresh SSE meter in pieces of `size` bytes.
    fn streamed(body: &str, size: usize) -> (Meter, Arc<Mutex<Vec<Inference>>>) {
        let (mut meter, records) = new_meter();
        meter.answer_begins(true);
        for piece in body.as_bytes().chunks(size) {
            meter.read(piece);
        }
        (meter, records)
    }

    #[test]
    fn a_streamed_chat_gives_its_numbers_whatever_the_pieces_it_arrives_in() {
        for include_usage in [false, true] {
            for size in [1, 2, 7, 64, 100_000] {
                let (mut meter, records) = streamed(&llama_chat_stream(include_usage), size);
                meter.answer_ended();
                drop(meter);
                let inference = only(&records);
                assert_eq!(inference.outcome, RequestOutcome::Ok);
                // Without usage, the prompt is cache_n + prompt_n.
                assert_eq!(inference.prompt_tokens, Some(67), "{include_usage} {size}");
                assert_eq!(inference.output_tokens, Some(16));
                assert_eq!(inference.prefill, Some(Throughput::new(47, 23.5)));
                assert_eq!(inference.decode, Some(Throughput::new(15, 400.0)));
                assert!(inference.time_to_first_token.is_some());
            }
        }
    }

    #[test]
    fn decode_speed_counts_the_steps_llama_server_timed() {
        // A one-token answer: llama-server's generation clock timed no
        // step (its own predicted_per_second reads 200,000 tokens/s).
        let one = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1},"timings":{"cache_n":0,"prompt_n":9,"prompt_ms":30.0,"predicted_n":1,"predicted_ms":0.005,"predicted_per_second":200000.0}}"#;
        let (mut meter, records) = new_meter();
        meter.answer_begins(false);
        meter.read(one.as_bytes());
        meter.answer_ended();
        let inference = only(&records);
        assert_eq!(inference.output_tokens, Some(1));
        assert_eq!(inference.decode, Some(Throughput::new(0, 0.005)));
        // Counts beyond u64 give no prompt size, and no panic.
        let huge = r#"{"choices":[],"timings":{"cache_n":18446744073709551615,"prompt_n":2}}"#;
        let (mut meter, records) = new_meter();
        meter.answer_begins(false);
        meter.read(huge.as_bytes());
        meter.answer_ended();
        assert_eq!(only(&records).prompt_tokens, None);
    }

    #[test]
    fn past_the_first_token_whole_event_pieces_are_read_at_done_crlf_too() {
        // Pieces of one event each, one line ending in `\r\n`: the numbers
        // on the last events count, and `[DONE]` ends the answer.
        let (mut meter, records) = new_meter();
        meter.answer_begins(true);
        for piece in [
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\r\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\r\n\n",
        ] {
            meter.read(piece.as_bytes());
        }
        meter.answer_ended();
        let inference = only(&records);
        assert_eq!(inference.outcome, RequestOutcome::Ok);
        assert_eq!(
            (inference.prompt_tokens, inference.output_tokens),
            (Some(5), Some(2))
        );
    }

    #[test]
    fn the_first_token_is_the_first_event_with_generated_text() {
        let (mut meter, records) = new_meter();
        meter.answer_begins(true);
        meter.read(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\n\n",
        );
        meter.read(b"data: {\"choices\":[{\"delta\":{\"content\":\"\"}}]}\n\n");
        assert_eq!(meter.seen.first_token, None);
        std::thread::sleep(Duration::from_millis(20));
        meter.read(b"data: {\"choices\":[{\"text\":\"Hi\",\"index\":0}]}\r\n\r\n");
        let first = meter.seen.first_token.expect("text counts");
        assert!(first >= Duration::from_millis(20));
        meter.read(b"data: {\"choices\":[{\"delta\":{\"content\":\"more\"}}]}\n\n");
        assert_eq!(meter.seen.first_token, Some(first));
        meter.read(b"data: [DONE]\n\n");
        meter.answer_ended();
        let inference = only(&records);
        assert_eq!(inference.time_to_first_token, Some(first));
        // No usage, no timings: nothing invented.
        assert_eq!(
            (inference.prompt_tokens, inference.decode),
            (None, None),
            "{inference:?}"
        );
        for (delta, generated) in [
            (r#"{"reasoning_content":"hm"}"#, true),
            (r#"{"tool_calls":[{"id":"x"}]}"#, true),
            (r#"{"tool_calls":[]}"#, false),
            (r#"{"content":7}"#, false),
        ] {
            let (mut meter, _) = new_meter();
            meter.answer_begins(true);
            meter.read(format!("data: {{\"choices\":[{{\"delta\":{delta}}}]}}\n\n").as_bytes());
            assert_eq!(meter.seen.first_token.is_some(), generated, "{delta}");
            meter.finish(RequestOutcome::Shutdown);
        }
    }

    #[test]
    fn a_stream_without_done_is_a_backend_error_and_records_no_numbers() {
        let body = llama_chat_stream(false);
        let cut = body.replace("data: [DONE]\n\n", "");
        let (mut meter, records) = streamed(&cut, 50);
        meter.answer_ended();
        let inference = only(&records);
        assert_eq!(inference, Inference::new(RequestOutcome::BackendError));
    }

    #[test]
    fn outcomes_are_recorded_once_and_a_complete_answer_stays_ok() {
        // Dropped before the end: the client hung up.
        let (mut meter, records) = streamed("data: {\"choices\":[]}\n\n", 5);
        meter.read(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n");
        drop(meter);
        assert_eq!(only(&records).outcome, RequestOutcome::ClientCancelled);
        // A cut after `[DONE]` was seen: answered in full.
        let (mut meter, records) = streamed(&llama_chat_stream(true), 1000);
        meter.finish(RequestOutcome::Shutdown);
        meter.finish(RequestOutcome::Timeout);
        drop(meter);
        assert_eq!(only(&records).outcome, RequestOutcome::Ok);
        // Nothing but the outcome for a request not answered in full.
        let (mut meter, records) = streamed(&llama_chat_stream(true).replace("[DONE]", ""), 9);
        meter.finish(RequestOutcome::Timeout);
        assert_eq!(only(&records), Inference::new(RequestOutcome::Timeout));
    }

    #[test]
    fn a_whole_answer_is_read_up_to_its_bound_in_any_key_order() {
        let usage = r#""usage":{"completion_tokens":16,"prompt_tokens":67,"total_tokens":83}"#;
        let choices = r#""choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"\"usage\": {\"prompt_tokens\": 1}"}}]"#;
        for body in [
            format!("{{{choices},\"object\":\"chat.completion\",{usage},\"id\":\"x\",{TIMINGS}}}"),
            format!("{{{TIMINGS},{usage},{choices}}}"),
        ] {
            let (mut meter, records) = new_meter();
            meter.answer_begins(false);
            for piece in body.as_bytes().chunks(10) {
                meter.read(piece);
            }
            meter.answer_ended();
            let inference = only(&records);
            assert_eq!(inference.prompt_tokens, Some(67));
            assert_eq!(inference.output_tokens, Some(16));
            assert_eq!(inference.prefill, Some(Throughput::new(47, 23.5)));
            assert_eq!(inference.time_to_first_token, None);
        }
        // Over the bound: the outcome alone.
        let (mut meter, records) = new_meter();
        meter.answer_begins(false);
        let filler = format!(
            "{{\"choices\":[{{\"text\":\"{}\"}}],",
            "x".repeat(MAX_WHOLE)
        );
        meter.read(filler.as_bytes());
        meter.read(format!("{usage}}}").as_bytes());
        meter.answer_ended();
        assert_eq!(only(&records), Inference::new(RequestOutcome::Ok));
    }

    #[test]
    fn odd_values_read_as_absent_and_events_over_the_bound_are_skipped() {
        let (mut meter, records) = new_meter();
        meter.answer_begins(true);
        let long = format!(
            "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":5}},\"pad\":\"{}\"}}\n\n",
            "y".repeat(MAX_EVENT)
        );
        meter.read(long.as_bytes());
        assert!(meter.seen.usage.is_none());
        meter.read(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":2.5},\
              \"timings\":{\"prompt_n\":\"4\",\"prompt_ms\":null,\"predicted_n\":[1],\"predicted_ms\":{}}}\n\n",
        );
        meter.read(b"data: [DONE]\n\n");
        meter.answer_ended();
        assert_eq!(only(&records), Inference::new(RequestOutcome::Ok));
        // The scanner keeps nothing of a skipped event.
        assert!(matches!(&meter.reader, Reader::Events(s) if s.data.capacity() <= MAX_EVENT));
    }

    #[test]
    fn only_event_data_is_read_and_multi_line_data_is_joined() {
        let mut scanner = EventScanner::default();
        let mut events = Vec::new();
        scanner.feed(
            b": comment\nevent: x\ndata: a\ndata:b\nid: 3\n\ndata: c\r\n\r\n\n\n",
            |e| events.push(String::from_utf8(e.to_vec()).unwrap()),
        );
        assert_eq!(events, ["a\nb", "c"]);
    }

    #[test]
    fn only_keys_name_numbers() {
        assert!(names_numbers(br#"{"choices":[],"usage":{}}"#));
        assert!(names_numbers(br#"{"timings":{}}"#));
        assert!(!names_numbers(
            br#"{"delta":{"content":"the \"usage\" and \"timings\""}}"#
        ));
        assert!(!names_numbers(br#"{"usage_x":1}"#));
    }
}
