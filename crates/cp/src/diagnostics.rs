//! The diagnostics server (port 5680): `/healthy` says the process is up,
//! `/ready` says it can serve (its store answers).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kodiak_api::ResourceKey;
use kodiak_store::ResourceStore;

pub fn router(store: Arc<dyn ResourceStore>) -> Router {
    Router::new().route("/healthy", get(|| async { "ok\n" })).route("/ready", get(ready)).with_state(store)
}

async fn ready(State(store): State<Arc<dyn ResourceStore>>) -> (StatusCode, String) {
    match store.get(&ResourceKey::mesh("default")).await {
        Ok(_) => (StatusCode::OK, "ready\n".into()),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("store is not answering: {error}\n")),
    }
}
