//! CSV (RFC 4180): one question per file, a header row, `reasons` spread
//! over one column per failure reason.

use serde_json::Value as Json;
use survey_schema::FailureKind;

use crate::report::Answer;

/// One question's rows as CSV.
pub fn render(answer: &Answer) -> String {
    let mut header = Vec::new();
    for column in &answer.columns {
        if column == "reasons" {
            header.extend(FailureKind::ALL.iter().map(|r| format!("reasons.{r}")));
        } else {
            header.push(column.clone());
        }
    }
    let mut out = line(header.iter().map(String::as_str));
    for row in &answer.rows {
        let mut fields = Vec::with_capacity(header.len());
        for (column, value) in answer.columns.iter().zip(row) {
            if column == "reasons" {
                fields.extend(FailureKind::ALL.iter().map(|reason| {
                    value
                        .get(reason.as_str())
                        .and_then(Json::as_u64)
                        .unwrap_or(0)
                        .to_string()
                }));
            } else {
                fields.push(match value {
                    Json::Null => String::new(),
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
        }
        out.push_str(&line(fields.iter().map(String::as_str)));
    }
    out
}

fn line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut out = fields.map(quote).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    out
}

/// Quotes a field when it holds a comma, a quote or a line break.
fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::QUESTIONS;
    use serde_json::json;

    #[test]
    fn rows_become_rfc_4180_lines_with_one_column_per_reason() {
        let answer = Answer {
            question: QUESTIONS[1],
            columns: vec![
                "model".into(),
                "failures".into(),
                "failure_rate".into(),
                "reasons".into(),
            ],
            rows: vec![
                vec![
                    json!("a,b"),
                    json!(3),
                    json!(0.75),
                    json!({"spawn_failed": 2, "other": 1}),
                ],
                vec![json!("say \"hi\""), json!(0), json!(null), json!({})],
            ],
            suppressed: 0,
            no_source_data: false,
        };
        let csv = render(&answer);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "model,failures,failure_rate,reasons.spawn_failed,reasons.health_timeout,\
             reasons.exited_before_healthy,reasons.backend_proxy_failed,\
             reasons.capacity_rejected,reasons.known_kv_cache_crash,reasons.mmproj_missing,\
             reasons.other"
        );
        assert_eq!(lines[1], "\"a,b\",3,0.75,2,0,0,0,0,0,0,1");
        assert_eq!(lines[2], "\"say \"\"hi\"\"\",0,,0,0,0,0,0,0,0,0");
        assert_eq!(lines[3], "");
    }
}
