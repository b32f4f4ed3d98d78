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
    /// Dataplanes with their status (Online while connected) and last connection
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
    let mut table = Table::new(&["MESH", "NAME", "TAGS", "STATUS", "LAST CONNECTED", "AGE"]);
    for overview in overviews {
        let insight = &overview.dataplane_insight;
        table.push(vec![
            overview.mesh.clone(),
            overview.name.clone(),
            dataplane_tags(&overview.dataplane),
            if insight.is_online() { "Online" } else { "Offline" }.to_owned(),
            insight.last_connected().map_or_else(|| "never".to_owned(), |time| age(Some(time), now)),
            age(overview.creation_time.as_deref(), now),
        ]);
    }
    print!("{table}");
    Ok(())
}
