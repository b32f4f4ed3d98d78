//! Talking to the control plane's dp-server: `POST /bootstrap` (retried
//! until the control plane answers) and `POST /drain` (best effort), over
//! TLS with an `https://` address.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kodiak_api::bootstrap::{BootstrapRequest, BootstrapResponse, DrainRequest};
use kodiak_client::ApiError;
use reqwest::{StatusCode, Url};

use crate::tls::{Trust, tls_failure};

/// How long one bootstrap request may take; the control plane answers in
/// milliseconds, so a long wait means it is stuck and worth another try.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `/drain` is a courtesy on the way out; shutdown must not wait on it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The dp-server of one control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    http: reqwest::Client,
    base: Url,
    trust: Trust,
}

impl ControlPlane {
    /// The dp-server at `address` (`https://` or, for a control plane with
    /// `dpServer.tlsEnabled: false`, `http://`), trusted as `trust` says.
    pub fn new(address: &str, trust: Trust) -> anyhow::Result<Self> {
        let invalid = |reason: &str| format!("invalid --cp-address {address:?}: {reason}");
        if !address.contains("://") {
            bail!(invalid(&format!("expected a URL such as https://{address}")));
        }
        let base = Url::parse(address).with_context(|| invalid("expected a URL such as https://127.0.0.1:5678"))?;
        let builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT);
        let builder = match (base.scheme(), &trust) {
            ("https", _) => match trust.client_config()? {
                Some(config) => builder.use_preconfigured_tls(config),
                None => builder,
            },
            ("http", Trust::CaFile { path, .. }) => bail!(invalid(&format!(
                "--ca-cert-file {} is given but the address is plaintext http://; use https://",
                path.display()
            ))),
            ("http", Trust::SystemRoots) => builder,
            (other, _) => bail!(invalid(&format!("the scheme must be https (or http), not {other:?}"))),
        };
        if base.host().is_none() {
            bail!(invalid("expected a URL such as https://127.0.0.1:5678"));
        }
        Ok(Self { http: builder.build()?, base, trust })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    /// `POST /bootstrap`, retried with exponential backoff while the control
    /// plane cannot be reached or answers 5xx; one log line per failed
    /// attempt. A 4xx answer is final: retrying would get the same answer.
    /// With `give_up_after`, the last wait is cut short so that one more
    /// attempt is made when that much time has passed, and that is the last.
    pub async fn bootstrap(
        &self,
        request: &BootstrapRequest,
        give_up_after: Option<Duration>,
    ) -> anyhow::Result<BootstrapResponse> {
        let url = self.url("/bootstrap");
        let started = Instant::now();
        let mut backoff = Backoff::default();
        loop {
            let problem = match self.http.post(url.clone()).json(request).send().await {
                Ok(response) if response.status().is_success() => {
                    let body = response.bytes().await.with_context(|| format!("reading the answer of {url}"))?;
                    return serde_json::from_slice(&body).with_context(|| {
                        format!(
                            "the answer of {url} is not a bootstrap; is {} a Kodiak control plane's dp-server?",
                            self.base
                        )
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    let error = api_error(status, &body);
                    if status == StatusCode::NOT_FOUND && !is_about_a_dataplane(&body) {
                        bail!(
                            "{} does not look like a Kodiak dp-server (it answered 404 for /bootstrap): is \
                             --cp-address the dp-server port (default 5678), not the REST API (5681)?\n  \
                             its answer: {error}",
                            self.base
                        );
                    }
                    if !status.is_server_error() {
                        bail!(
                            "the control plane at {} refused the bootstrap ({status}): {error}{}",
                            self.base,
                            hint(status, &error)
                        );
                    }
                    format!("answered {status}: {error}")
                }
                Err(e) => match tls_failure(&e) {
                    // The certificate will be the same on the next try.
                    Some(failure) => bail!("{}: {}", self.base, self.trust.explain(failure)),
                    None => format!("is not reachable ({})", root_cause(&e)),
                },
            };
            // With a time limit, the last wait ends at the limit and one more
            // attempt is made there, so `--connect-timeout 2s` tries for 2s.
            let waited = started.elapsed();
            let delay = match give_up_after {
                Some(limit) if waited >= limit => bail!(
                    "gave up after {}: the control plane at {} {problem}",
                    humantime::format_duration(round_to_ms(waited)),
                    self.base
                ),
                Some(limit) => backoff.next_delay().min(limit - waited),
                None => backoff.next_delay(),
            };
            tracing::warn!(
                "control plane at {} {problem}; retrying in {}",
                self.base,
                humantime::format_duration(round_to_ms(delay))
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// `POST /drain`: tells the control plane this instance is going away so
    /// callers stop choosing it before its listeners close. Best effort.
    pub async fn drain(&self, request: &DrainRequest) {
        let url = self.url("/drain");
        match self.http.post(url.clone()).json(request).timeout(DRAIN_TIMEOUT).send().await {
            Ok(response) if response.status().is_success() => tracing::info!("control plane told to drain {url}"),
            Ok(response) => {
                let status = response.status();
                let error = api_error(status, &response.text().await.unwrap_or_default());
                tracing::warn!("control plane did not accept the drain ({status}): {error}");
            }
            Err(e) => tracing::warn!("could not tell the control plane to drain ({})", root_cause(&e)),
        }
    }
}

/// The control plane's error body (Kuma's shape), or the body as text.
fn api_error(status: StatusCode, body: &str) -> ApiError {
    match serde_json::from_str::<ApiError>(body) {
        Ok(error) => ApiError { status: status.as_u16(), ..error },
        Err(_) => ApiError {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: body.trim().chars().take(500).collect(),
            invalid_parameters: Vec::new(),
        },
    }
}

/// Whether a 404 answer is the dp-server's own "Dataplane ... does not
/// exist" (a Kuma error about the Dataplane), rather than another server's
/// 404: the REST API's `unknown resource collection "bootstrap"`, the
/// diagnostics port's bare 404, anything else listening there.
fn is_about_a_dataplane(body: &str) -> bool {
    serde_json::from_str::<ApiError>(body).is_ok_and(|error| error.detail.starts_with("Dataplane "))
}

/// What to do about a refusal, when kodiak-dp knows more than the control plane.
fn hint(status: StatusCode, error: &ApiError) -> &'static str {
    if status == StatusCode::CONFLICT && error.detail.contains("already has a connected sidecar") {
        "\n  hint: an Envoy left over from a kodiak-dp that was killed (SIGKILL) may still hold the \
         connection; look for it with `pgrep -af envoy`"
    } else {
        ""
    }
}

/// reqwest wraps the interesting part ("Connection refused (os error
/// 111)") in layers of "error sending request for url"; show the innermost.
fn root_cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn round_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}

/// Exponential backoff from 0.5s, doubling, capped at 10s: quick when the
/// control plane is just starting, quiet when it is down for long.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    }

    fn control_plane(address: &str) -> anyhow::Result<ControlPlane> {
        ControlPlane::new(address, Trust::SystemRoots)
    }

    #[test]
    fn addresses_are_checked_up_front() {
        assert!(control_plane("https://127.0.0.1:5678").is_ok());
        assert!(control_plane("http://127.0.0.1:5678").is_ok());
        let no_scheme = control_plane("127.0.0.1:5678").unwrap_err().to_string();
        assert!(no_scheme.contains("https://127.0.0.1:5678"), "{no_scheme}");
        assert!(control_plane("ftp://cp").unwrap_err().to_string().contains("https"));
        let plaintext = ControlPlane::new("http://cp:5678", crate::tls::tests::ca_file()).unwrap_err().to_string();
        assert!(plaintext.contains("/etc/kodiak/ca.crt") && plaintext.contains("use https://"), "{plaintext}");
    }

    #[test]
    fn paths_join_onto_a_base_with_or_without_a_prefix() {
        let cp = control_plane("https://cp:5678").unwrap();
        assert_eq!(cp.url("/bootstrap").as_str(), "https://cp:5678/bootstrap");
        let cp = control_plane("http://cp:5678/prefix/").unwrap();
        assert_eq!(cp.url("/drain").as_str(), "http://cp:5678/prefix/drain");
    }

    #[test]
    fn error_answers_keep_kumas_shape_or_show_the_body() {
        let body = r#"{"type":"/std-errors","status":400,"title":"Invalid Dataplane","detail":"2 problems",
            "invalid_parameters":[{"field":"networking.address","reason":"must be defined"}]}"#;
        let error = api_error(StatusCode::BAD_REQUEST, body).to_string();
        assert_eq!(error, "Invalid Dataplane: 2 problems\n  * networking.address: must be defined");
        assert_eq!(api_error(StatusCode::BAD_GATEWAY, "down\n").to_string(), "Bad Gateway: down");
    }

    #[test]
    fn only_the_dp_servers_own_404_is_about_a_dataplane() {
        let missing = r#"{"type":"/std-errors","status":404,"title":"Not Found",
            "detail":"Dataplane default.web-1 does not exist: apply it first"}"#;
        assert!(is_about_a_dataplane(missing));
        let rest_api = r#"{"type":"/std-errors","status":404,"title":"Not Found",
            "detail":"unknown resource collection \"bootstrap\"; known: meshes, dataplanes"}"#;
        assert!(!is_about_a_dataplane(rest_api));
        assert!(!is_about_a_dataplane(""));
        assert!(!is_about_a_dataplane("<html>Not Found</html>"));
    }
}
