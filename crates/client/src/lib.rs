//! Typed client for the Kodiak REST API (Kuma 2.x's shapes), shared by
//! kodiakctl, kodiak-dp and tests, so every caller builds the same URLs and
//! reads errors the same way.

mod error;
mod page_walk;
mod paths;
pub mod tls;
mod types;

use std::time::Duration;

use kodiak_api::{Resource, ResourceKey, ResourceType};
use reqwest::{Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use page_walk::{MAX_PAGES, PageWalk};

pub use error::{ApiError, Error, InvalidParameter};
pub use paths::Page;
pub use tls::{CaCerts, CaCertsError, Trust};
pub use types::{
    Applied, DataplaneInsight, DataplaneOverview, DataplaneTokenRequest, Fetched, Index, ListPage, MtlsInsight,
    ResourceDescriptor, Subscription, UserTokenRequest,
};

/// How long to wait for a TCP connection: a control plane on the same
/// network answers in milliseconds, so a long wait only delays the hint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take; the largest page is 1000 resources.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one control plane's REST API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// A user token sent as `Authorization: Bearer <token>` with every request.
    token: Option<String>,
    trust: Trust,
}

impl Client {
    /// A client for the API at `base_url` (`http://127.0.0.1:5681`) that
    /// trusts the system's roots over `https://`. The URL is checked here so
    /// a typo fails before any request.
    pub fn new(base_url: &str) -> Result<Client, Error> {
        Client::trusting(base_url, Trust::SystemRoots)
    }

    /// A client for the API at `base_url` that accepts the certificates
    /// `trust` names over `https://`. CA certificates with a plaintext
    /// `http://` address are refused: they would protect nothing.
    pub fn trusting(base_url: &str, trust: Trust) -> Result<Client, Error> {
        let invalid = |reason: String| Error::InvalidAddress { address: base_url.to_owned(), reason };
        // `127.0.0.1:5681` is the usual slip; the URL parser would call it a
        // "relative URL without a base", which does not say what to add.
        if !base_url.contains("://") {
            let with_scheme = format!("http://{base_url}");
            let hint = match Url::parse(&with_scheme) {
                Ok(url) if url.host().is_some() => format!("did you mean {with_scheme}?"),
                _ => "expected an address like http://127.0.0.1:5681".to_owned(),
            };
            return Err(invalid(format!("the address has no scheme (http:// or https://); {hint}")));
        }
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!("the scheme must be http or https, not {:?}", base.scheme())));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("expected an address like http://127.0.0.1:5681".into()));
        }
        let builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT);
        let builder = match (&trust, base.scheme()) {
            (Trust::CaCerts(_), "http") => {
                return Err(invalid(
                    "CA certificates are given but the address is plaintext http://; use https://".into(),
                ));
            }
            (Trust::CaCerts(certs), _) => {
                builder.use_preconfigured_tls(certs.client_config().map_err(|e| invalid(e.to_string()))?)
            }
            (Trust::SkipVerify, _) => builder.tls_danger_accept_invalid_certs(true),
            (Trust::SystemRoots, _) => builder,
        };
        let http = builder.build().map_err(|e| invalid(e.to_string()))?;
        Ok(Client { http, base, token: None, trust })
    }

    /// The same client, sending `token` (a user token) as `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token.map(|token| token.trim().to_owned()).filter(|token| !token.is_empty());
        self
    }

    /// `POST /tokens/dataplane`: a dataplane token (admins only).
    pub async fn generate_dataplane_token(&self, request: &DataplaneTokenRequest) -> Result<String, Error> {
        self.post_for_text(&paths::root_url(&self.base, &["tokens", "dataplane"]), request).await
    }

    /// `POST /tokens/user`: a user token (admins only).
    pub async fn generate_user_token(&self, request: &UserTokenRequest) -> Result<String, Error> {
        self.post_for_text(&paths::root_url(&self.base, &["tokens", "user"]), request).await
    }

    async fn post_for_text(&self, url: &Url, body: &impl serde::Serialize) -> Result<String, Error> {
        let response = check(self.send(self.http.post(url.clone()).json(body), url).await?).await?;
        response.text().await.map_err(|e| Error::UnexpectedAnswer { url: url.to_string(), reason: root_cause(&e) })
    }

    /// The address this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /`: which control plane answers, and its version.
    pub async fn index(&self) -> Result<Index, Error> {
        self.get_json(&paths::root_url(&self.base, &[""])).await
    }

    /// `GET /_resources`: the resource types the control plane serves.
    pub async fn resource_types(&self) -> Result<Vec<ResourceDescriptor>, Error> {
        #[derive(serde::Deserialize)]
        struct Answer {
            resources: Vec<ResourceDescriptor>,
        }
        let answer: Answer = self.get_json(&paths::root_url(&self.base, &["_resources"])).await?;
        Ok(answer.resources)
    }

    /// One resource's document and version, or `None` when it does not exist.
    pub async fn get(&self, key: &ResourceKey) -> Result<Option<Fetched>, Error> {
        let url = self.resource_url(key)?;
        let response = self.send(self.http.get(url.clone()), &url).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = check(response).await?;
        let version = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|tag| tag.to_str().ok())
            .map(|tag| tag.trim_start_matches("W/").trim_matches('"').to_owned());
        let document = read_json(response, &url).await?;
        Ok(Some(Fetched { document, version }))
    }

    /// One page of a list. `mesh` = `None` lists a mesh-scoped type across
    /// all meshes; it is ignored for global types.
    pub async fn list(&self, kind: ResourceType, mesh: Option<&str>, page: Page) -> Result<ListPage, Error> {
        self.get_json(&paths::list_url(&self.base, kind, mesh, page)).await
    }

    /// Every item of a list, following `next` from page to page.
    pub async fn list_all(&self, kind: ResourceType, mesh: Option<&str>) -> Result<Vec<Value>, Error> {
        self.collect(paths::list_url(&self.base, kind, mesh, Page::LARGEST)).await
    }

    /// Creates or updates a resource (`PUT`); says which happened.
    pub async fn put(&self, resource: &Resource) -> Result<Applied, Error> {
        let url = self.resource_url(&resource.key)?;
        let request = self.http.put(url.clone()).json(&resource.to_document());
        let response = check(self.send(request, &url).await?).await?;
        Ok(if response.status() == StatusCode::CREATED { Applied::Created } else { Applied::Updated })
    }

    /// Deletes a resource; `false` when there was nothing to delete.
    pub async fn delete(&self, key: &ResourceKey) -> Result<bool, Error> {
        let url = self.resource_url(key)?;
        let response = self.send(self.http.delete(url.clone()), &url).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check(response).await?;
        Ok(true)
    }

    /// Every dataplane of a mesh with its connection insight
    /// (`GET /meshes/{mesh}/dataplanes/_overview`, all pages).
    pub async fn dataplanes_overview(&self, mesh: &str) -> Result<Vec<DataplaneOverview>, Error> {
        self.collect(paths::overview_url(&self.base, mesh, Page::LARGEST)).await
    }

    /// `GET` of any API path below the base (each segment percent-encoded)
    /// with query parameters, as JSON: for endpoints without a typed method
    /// (the inspect endpoints).
    pub async fn get_path(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Value, Error> {
        let mut url = paths::root_url(&self.base, segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.get_json(&url).await
    }

    fn resource_url(&self, key: &ResourceKey) -> Result<Url, Error> {
        paths::resource_url(&self.base, key).ok_or(Error::MeshRequired { kind: key.kind })
    }

    async fn collect<T: DeserializeOwned>(&self, first: Url) -> Result<Vec<T>, Error> {
        let mut items = Vec::new();
        let mut walk = PageWalk::new(MAX_PAGES);
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page: ListPage<T> = self.get_json(&url).await?;
            next = walk.next(&url, page.items.is_empty(), page.next.as_deref())?;
            items.extend(page.items);
        }
        Ok(items)
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &Url) -> Result<T, Error> {
        let response = check(self.send(self.http.get(url.clone()), url).await?).await?;
        read_json(response, url).await
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &Url) -> Result<Response, Error> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().await.map_err(|error| {
            let cause = root_cause(&error);
            if let Some(failure) = tls::tls_failure(&error) {
                Error::tls(self.base.as_str(), &self.trust, failure)
            } else if error.is_connect() {
                Error::Unreachable { address: self.base.to_string(), cause }
            } else {
                Error::Transport { url: url.to_string(), cause }
            }
        })
    }
}

/// Turns an error status into [`Error::Api`] with the server's explanation.
async fn check(response: Response) -> Result<Response, Error> {
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(Error::Api(ApiError::from_body(status.as_u16(), status.canonical_reason(), &body)))
}

async fn read_json<T: DeserializeOwned>(response: Response, url: &Url) -> Result<T, Error> {
    let unexpected = |reason: String| Error::UnexpectedAnswer { url: url.to_string(), reason };
    let body = response.bytes().await.map_err(|e| unexpected(root_cause(&e)))?;
    serde_json::from_slice(&body).map_err(|e| unexpected(format!("not the expected JSON: {e}")))
}

/// reqwest's own message ("error sending request") hides the useful part
/// (`Connection refused`), which sits at the end of the source chain.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_up_front() {
        assert!(Client::new("http://127.0.0.1:5681").is_ok());
        assert!(Client::new("https://cp.example/kodiak/").is_ok());
        for bad in ["127.0.0.1:5681", "ftp://cp.example", "not a url", "http://"] {
            let error = Client::new(bad).unwrap_err();
            assert!(matches!(error, Error::InvalidAddress { .. }), "{bad}: {error}");
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn an_address_without_a_scheme_is_shown_with_one() {
        let error = Client::new("127.0.0.1:5681").unwrap_err().to_string();
        assert!(error.contains("has no scheme"), "{error}");
        assert!(error.contains("did you mean http://127.0.0.1:5681?"), "{error}");
        let error = Client::new("cp.example:5681/kodiak/").unwrap_err().to_string();
        assert!(error.contains("did you mean http://cp.example:5681/kodiak/?"), "{error}");
        let error = Client::new("not a url").unwrap_err().to_string();
        assert!(error.contains("expected an address like http://127.0.0.1:5681"), "{error}");
    }

    /// A fake control plane on loopback that answers every request with the
    /// JSON `body(its address)`; returns that address.
    async fn serve_forever(body: impl Fn(&str) -> String + Send + 'static) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let base = address.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                // Requests without a body fit in one read.
                let mut request = [0; 4096];
                let _ = stream.read(&mut request).await;
                let body = body(&base);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn a_server_that_keeps_offering_the_same_page_is_left() {
        let address =
            serve_forever(|base| format!(r#"{{"total":2,"items":[{{}}],"next":"{base}/meshes?size=1"}}"#)).await;
        let client = Client::new(&address).unwrap();
        let listed = tokio::time::timeout(Duration::from_secs(10), client.list_all(ResourceType::Mesh, None)).await;
        let error = listed.expect("the walk ends").unwrap_err();
        assert!(matches!(error, Error::UnexpectedAnswer { .. }), "{error}");
        assert!(error.to_string().contains("leads back to a page already fetched"), "{error}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address() {
        // Port 1 on loopback is never served in a test environment.
        let client = Client::new("http://127.0.0.1:1").unwrap();
        let error = client.index().await.unwrap_err();
        assert!(matches!(error, Error::Unreachable { .. }), "{error}");
        assert!(error.to_string().contains("http://127.0.0.1:1/"), "{error}");
    }
}
