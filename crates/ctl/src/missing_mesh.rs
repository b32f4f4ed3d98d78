//! Telling a mesh that does not exist from an empty one. The REST API lists
//! a mesh that does not exist as an empty list with status 200, as Kuma
//! does, so a typo in `-m` would look like an empty mesh; kodiakctl asks.

use kodiak_api::ResourceKey;
use kodiak_client::Client;

/// After a list in `mesh` came back empty: fails when the mesh does not
/// exist, since the empty list then says nothing.
pub async fn check_mesh_of_empty_list(client: &Client, mesh: &str) -> anyhow::Result<()> {
    if client.get(&ResourceKey::mesh(mesh)).await?.is_none() {
        anyhow::bail!("mesh {mesh:?} does not exist");
    }
    Ok(())
}
