//! `kodiakctl inspect dataplanes`: dataplanes with their connection state.

use std::time::SystemTime;

use clap::Subcommand;

use crate::Global;
use crate::age::age;
use crate::get::dataplane_tags;
use crate::missing_mesh::check_mesh_of_empty_list;
use crate::table::Table;

const EXAMPLES: &str = "\
Examples:
  kodiakctl inspect dataplanes
  kodiakctl inspect dataplanes -m staging";

/// Inspect resources together with what the control plane knows about them.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Dataplanes with their status (Online while connected), last connection, and the
    /// configurations their sidecar ACKed and NACKed (with the last NACK's reason)
    #[command(visible_alias = "dp", after_help = EXAMPLES)]
    Dataplanes {
        /// The mesh
        #[arg(short, long, default_value = "default")]
        mesh: String,
    },
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let What::Dataplanes { mesh } = args.what;
    let client = crate::config::client(global)?;
    let overviews = client.dataplanes_overview(&mesh).await?;
    if overviews.is_empty() {
        check_mesh_of_empty_list(&client, &mesh).await?;
    }
    let now = SystemTime::now();
    let mut table =
        Table::new(&["MESH", "NAME", "TAGS", "STATUS", "LAST CONNECTED", "ACKS", "NACKS", "LAST NACK", "AGE"]);
    for overview in overviews {
        let insight = &overview.dataplane_insight;
        let totals = insight.latest().map(|subscription| &subscription.status.total);
        table.push(vec![
            overview.mesh.clone(),
            overview.name.clone(),
            dataplane_tags(&overview.dataplane),
            if insight.is_online() { "Online" } else { "Offline" }.to_owned(),
            insight.last_connected().map_or_else(|| "never".to_owned(), |time| age(Some(time), now)),
            totals.map_or(0, |t| t.responses_acknowledged).to_string(),
            totals.map_or(0, |t| t.responses_rejected).to_string(),
            insight.last_nack().map_or_else(|| "-".to_owned(), |reason| shorten(&reason, LAST_NACK_WIDTH)),
            age(overview.creation_time.as_deref(), now),
        ]);
    }
    print!("{table}");
    Ok(())
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

    #[test]
    fn long_reasons_are_cut_on_one_line() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("line one\nline two", 8), "line one...");
    }
}
