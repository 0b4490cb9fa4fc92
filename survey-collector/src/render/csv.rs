//! CSV (RFC 4180): one question per file, a header row, `reasons` spread
//! over one column per failure reason.

use serde_json::Value as Json;
use survey_schema::FailureKind;

use crate::report::{Answer, Cell};

/// One question's rows as CSV.
pub fn render(answer: &Answer) -> String {
    table(answer.columns(), &answer.rows.cells())
}

/// A header row for `columns`, then a line per row of `values`.
fn table(columns: &[&str], values: &[Vec<Cell<'_>>]) -> String {
    let mut header = Vec::new();
    for column in columns {
        if *column == "reasons" {
            header.extend(FailureKind::ALL.iter().map(|r| format!("reasons.{r}")));
        } else {
            header.push(column.to_string());
        }
    }
    let mut out = line(header.iter().map(String::as_str));
    for row in values {
        let mut fields = Vec::with_capacity(header.len());
        for value in row {
            match value {
                Cell::Reasons(reasons) => {
                    fields.extend(FailureKind::ALL.iter().map(|reason| {
                        reasons
                            .get(reason.as_str())
                            .copied()
                            .unwrap_or(0)
                            .to_string()
                    }));
                }
                Cell::Text(text) => fields.push(text.unwrap_or_default().to_string()),
                Cell::Integer(n) => fields.push(n.map(|n| n.to_string()).unwrap_or_default()),
                // As in the JSON form.
                Cell::Real(f) => {
                    fields.push(f.map(|f| Json::from(f).to_string()).unwrap_or_default())
                }
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
    use crate::report::Reasons;

    #[test]
    fn rows_become_rfc_4180_lines_with_one_column_per_reason() {
        let reasons: Reasons = [("spawn_failed".to_string(), 2), ("other".to_string(), 1)].into();
        let none = Reasons::new();
        let columns = ["model", "failures", "failure_rate", "reasons"];
        let rows = vec![
            vec![
                Cell::Text(Some("a,b")),
                Cell::Integer(Some(3)),
                Cell::Real(Some(0.75)),
                Cell::Reasons(&reasons),
            ],
            vec![
                Cell::Text(Some("say \"hi\"")),
                Cell::Integer(Some(0)),
                Cell::Real(None),
                Cell::Reasons(&none),
            ],
        ];
        let csv = table(&columns, &rows);
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
