//! The embedded SQLite store keeps resources across restarts, and guards
//! its data directory against a second control plane.

use kodiak_cp::testing::start_sqlite;
use serde_json::{Value, json};

#[tokio::test]
async fn resources_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let cp = start_sqlite(dir.path()).unwrap();
    let mesh = json!({"type": "Mesh", "name": "payments"});
    let status =
        http.put(format!("{}/meshes/payments", cp.api_url())).body(mesh.to_string()).send().await.unwrap().status();
    assert_eq!(status, 201);
    cp.stop();

    let cp = start_sqlite(dir.path()).unwrap();
    let meshes: Value = http.get(format!("{}/meshes", cp.api_url())).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = meshes["items"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "payments"]);
}

#[test]
fn a_second_control_plane_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = start_sqlite(dir.path()).unwrap();
    let error = start_sqlite(dir.path()).err().expect("the second start fails").to_string();
    assert!(error.contains("already in use by another kodiak-cp"), "{error}");
}
