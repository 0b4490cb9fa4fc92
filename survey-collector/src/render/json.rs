//! JSON: one object, a key per question, each a list of rows whose fields
//! keep the queries' column order.

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value as Json;

use crate::report::{Answer, Report};

/// The report as pretty-printed JSON.
pub fn render(report: &Report) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::pretty(&mut out);
    let result = (|| {
        let mut map = serializer.serialize_map(Some(report.answers.len()))?;
        for answer in &report.answers {
            map.serialize_entry(answer.question.key, &Rows(answer))?;
        }
        SerializeMap::end(map)
    })();
    match result {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => report.to_json().to_string(),
    }
}

struct Rows<'a>(&'a Answer);

impl serde::Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.rows.len()))?;
        for row in &self.0.rows {
            seq.serialize_element(&Row(&self.0.columns, row))?;
        }
        SerializeSeq::end(seq)
    }
}

struct Row<'a>(&'a [String], &'a [Json]);

impl serde::Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (column, value) in self.0.iter().zip(self.1) {
            map.serialize_entry(column, value)?;
        }
        SerializeMap::end(map)
    }
}
