//! What the REST tests share: a control plane in this process and an HTTP
//! client that answers every request with its status and JSON body.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use kodiak_cp::testing::{TestControlPlane, start_memory, start_sqlite};
use reqwest::StatusCode;
use serde_json::Value;

pub struct Api {
    pub cp: TestControlPlane,
    pub http: reqwest::Client,
    _data: Option<tempfile::TempDir>,
}

impl Api {
    pub fn memory() -> Api {
        Api { cp: start_memory(), http: reqwest::Client::new(), _data: None }
    }

    pub fn sqlite() -> Api {
        let data = tempfile::tempdir().unwrap();
        let cp = start_sqlite(data.path()).unwrap();
        Api { cp, http: reqwest::Client::new(), _data: Some(data) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cp.api_url())
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.put_text(path, body.to_string()).await
    }

    pub async fn put_text(&self, path: &str, body: String) -> (StatusCode, Value) {
        let response = self.http.put(self.url(path)).body(body).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.delete(self.url(path)).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }
}
