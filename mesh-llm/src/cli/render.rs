//! The text renderers of `mesh-llm survey show` and `mesh-llm status`.

/// Survey's last export as a table: when and what became of it (sent,
/// failed, or unchanged and not sent, with the time of the export the
/// collector holds and when the heartbeat is due), whether
/// the opt-in inference metrics are on, the resource, then one line per
/// data point: its model (when it has one), its value and its other
/// attributes exactly as sent.
pub fn render_export(shown: &crate::api::SurveyExport) -> String {
    const MODEL: &str = "mesh_llm.model";
    let export = &shown.export;
    let age = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs())
        .saturating_sub(export.collected_at_unix_secs);
    // A left-out export says so: since when, and when the heartbeat is due.
    let outcome = match &export.unchanged {
        Some(unchanged) => unchanged.to_string(),
        None => export.outcome.to_string(),
    };
    let mut out = format!(
        "last export: collected {age} s ago, {outcome}, {} data points\n\
         inference metrics (telemetry.prompt_shape_metrics): {}\nresource: {}\n",
        export.rows.len(),
        if shown.prompt_shape_metrics {
            "on"
        } else {
            "off"
        },
        pairs(&export.resource)
    );
    let line = |metric: &str, kind: &str, unit: &str, value: &str, model: &str, rest: &str| {
        format!("{metric:<37} {kind:<9} {unit:<10} {value:>7}  {model:<24} {rest}\n")
    };
    out.push_str(&line(
        "metric",
        "kind",
        "unit",
        "value",
        MODEL,
        "other attributes",
    ));
    for row in &export.rows {
        let value = match (&row.value, row.count) {
            (Some(value), _) => value.to_string(),
            (None, Some(count)) => format!("n={count}"),
            (None, None) => "-".to_string(),
        };
        let model = row
            .attributes
            .get(MODEL)
            .map_or("-".to_string(), |m| m.to_string());
        let mut rest = row.attributes.clone();
        rest.remove(MODEL);
        out.push_str(&line(
            &row.metric,
            row.kind.as_str(),
            &row.unit,
            &value,
            &model,
            &pairs(&rest),
        ));
        if let (Some(sum), Some(bounds), Some(counts)) = (row.sum, &row.bounds, &row.bucket_counts)
        {
            let buckets: Vec<String> = counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| match bounds.get(i) {
                    Some(bound) => format!("<={bound}: {n}"),
                    None => format!(">{}: {n}", bounds.last().copied().unwrap_or(0.0)),
                })
                .collect();
            out.push_str(&format!(
                "{:38}sum {sum}, buckets {}\n",
                "",
                buckets.join(", ")
            ));
        }
    }
    out
}

/// `k=v, k2=v2`.
fn pairs(attributes: &std::collections::BTreeMap<String, survey::sent::AttributeValue>) -> String {
    attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status as a table.
pub fn render_status(status: &crate::node::NodeStatus) -> String {
    let mut out = String::new();
    if status.models.is_empty() {
        out.push_str("no models loaded\n");
    } else {
        out.push_str(&format!(
            "{:<32} {:>6} {:>8} {:>8} {:>10}  {:<12} {}\n",
            "model", "port", "pid", "context", "uptime_s", "launch", "state"
        ));
        for m in &status.models {
            out.push_str(&format!(
                "{:<32} {:>6} {:>8} {:>8} {:>10}  {:<12} {}\n",
                m.name, m.port, m.pid, m.ctx_size, m.uptime_secs, m.launch_kind, m.state
            ));
        }
    }
    for exit in &status.unexpected_exits {
        out.push_str(&format!(
            "unexpected exit: {} after {} s ({})\n",
            exit.name, exit.uptime_secs, exit.status
        ));
    }
    out.push_str(&status.survey);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survey_show_says_an_unchanged_export_was_not_sent_and_when_the_heartbeat_is() {
        let shown: crate::api::SurveyExport = serde_json::from_str(
            r#"{"prompt_shape_metrics":false,"collected_at_unix_secs":0,
                "outcome":"unchanged",
                "unchanged":{"since_unix_secs":1764857042,"heartbeat_in_secs":2525},
                "resource":{},"rows":[]}"#,
        )
        .expect("an export");
        let text = render_export(&shown);
        assert!(
            text.contains(
                ", unchanged since 14:04:02 UTC, not sent; heartbeat in 42 min, 0 data points"
            ),
            "{text}"
        );
        let sent: crate::api::SurveyExport = serde_json::from_str(
            r#"{"prompt_shape_metrics":false,"collected_at_unix_secs":0,
                "outcome":"sent","resource":{},"rows":[]}"#,
        )
        .expect("an export");
        assert!(render_export(&sent).contains(", sent, 0 data points"));
    }
}
