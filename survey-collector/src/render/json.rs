//! JSON: one object, a key per question, each a list of rows whose fields
//! keep the queries' column order (the row structs' field order).

use serde::ser::{SerializeMap, Serializer};

use crate::report::Report;

/// The report as pretty-printed JSON.
pub fn render(report: &Report) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::pretty(&mut out);
    let result = (|| {
        let mut map = serializer.serialize_map(Some(report.answers.len()))?;
        for answer in &report.answers {
            map.serialize_entry(answer.question.key, &answer.rows)?;
        }
        SerializeMap::end(map)
    })();
    match result {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => report.to_json().to_string(),
    }
}
