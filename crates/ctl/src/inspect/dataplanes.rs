//! `kodiakctl inspect dataplanes`: dataplanes with their connection state.

use std::time::SystemTime;

use kodiak_client::DataplaneOverview;

use crate::Global;
use crate::age::{age, until};
use crate::get::dataplane_tags;
use crate::missing_mesh::check_mesh_of_empty_list;
use crate::table::Table;

/// `kodiakctl inspect dataplanes`: one line per Dataplane of `mesh`.
pub async fn run(mesh: String, global: &Global) -> anyhow::Result<()> {
    let client = crate::config::client(global)?;
    let overviews = client.dataplanes_overview(&mesh).await?;
    if overviews.is_empty() {
        check_mesh_of_empty_list(&client, &mesh).await?;
    }
    let now = SystemTime::now();
    let mut table = Table::new(&HEADERS);
    for overview in &overviews {
        table.push(row(overview, now));
    }
    print!("{table}");
    Ok(())
}

const HEADERS: [&str; 11] =
    ["MESH", "NAME", "TAGS", "STATUS", "LAST CONNECTED", "ACKS", "NACKS", "MTLS", "CERT EXPIRY", "LAST NACK", "AGE"];

/// One dataplane's line. MTLS is how its inbounds treat callers (`STRICT`,
/// `PERMISSIVE`), `-` without a mesh certificate; CERT EXPIRY counts down to
/// the end of that certificate's life.
fn row(overview: &DataplaneOverview, now: SystemTime) -> Vec<String> {
    let insight = &overview.dataplane_insight;
    let totals = insight.latest().map(|subscription| &subscription.status.total);
    let mtls = insight.mtls.as_ref();
    vec![
        overview.mesh.clone(),
        overview.name.clone(),
        dataplane_tags(&overview.dataplane),
        if insight.is_online() { "Online" } else { "Offline" }.to_owned(),
        insight.last_connected().map_or_else(|| "never".to_owned(), |time| age(Some(time), now)),
        totals.map_or(0, |t| t.responses_acknowledged).to_string(),
        totals.map_or(0, |t| t.responses_rejected).to_string(),
        mtls.and_then(|mtls| mtls.inbound_mode.clone()).unwrap_or_else(|| "-".to_owned()),
        until(mtls.and_then(|mtls| mtls.certificate_expiration_time.as_deref()), now),
        insight.last_nack().map_or_else(|| "-".to_owned(), |reason| shorten(&reason, LAST_NACK_WIDTH)),
        age(overview.creation_time.as_deref(), now),
    ]
}

/// Envoy's NACK messages can be long: the table shows their start; the
/// whole text is in `GET /meshes/{mesh}/dataplanes/{name}/_overview`.
const LAST_NACK_WIDTH: usize = 80;

fn shorten(text: &str, width: usize) -> String {
    let text = text.replace('\n', " ");
    match text.char_indices().nth(width) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overview(insight: serde_json::Value) -> DataplaneOverview {
        serde_json::from_value(serde_json::json!({
            "mesh": "demo", "name": "web-1", "creationTime": "2025-06-01T11:00:00Z",
            "dataplane": {"networking": {"inbound": [{"tags": {"kuma.io/service": "web"}}]}},
            "dataplaneInsight": insight,
        }))
        .unwrap()
    }

    fn cell(row: &[String], header: &str) -> String {
        row[HEADERS.iter().position(|h| *h == header).unwrap()].clone()
    }

    #[test]
    fn mtls_columns_show_the_inbound_mode_and_the_time_left_on_the_certificate() {
        let now = humantime::parse_rfc3339("2025-06-01T12:00:00Z").unwrap();
        let secured = overview(serde_json::json!({
            "subscriptions": [{"connectTime": "2025-06-01T11:59:00Z"}],
            "mTLS": {"certificateExpirationTime": "2025-06-02T08:00:00Z", "lastCertificateRegeneration":
                "2025-06-01T08:00:00Z", "certificateRegenerations": 0, "issuedBackend": "ca-1",
                "supportedBackends": ["ca-1"], "serial": "0a", "inboundMode": "PERMISSIVE"},
        }));
        let row = row(&secured, now);
        assert_eq!(row.len(), HEADERS.len());
        assert_eq!((cell(&row, "MTLS"), cell(&row, "CERT EXPIRY")), ("PERMISSIVE".into(), "in 20h".into()));
        assert_eq!((cell(&row, "STATUS"), cell(&row, "AGE")), ("Online".into(), "60m".into()));

        let expired = overview(serde_json::json!({
            "mTLS": {"certificateExpirationTime": "2025-06-01T11:58:00Z", "inboundMode": "STRICT"},
        }));
        let row = super::row(&expired, now);
        assert_eq!((cell(&row, "MTLS"), cell(&row, "CERT EXPIRY")), ("STRICT".into(), "expired 2m ago".into()));

        let plain = super::row(&overview(serde_json::json!({"subscriptions": []})), now);
        assert_eq!((cell(&plain, "MTLS"), cell(&plain, "CERT EXPIRY")), ("-".into(), "-".into()));
    }

    #[test]
    fn long_reasons_are_cut_on_one_line() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("line one\nline two", 8), "line one...");
    }
}
