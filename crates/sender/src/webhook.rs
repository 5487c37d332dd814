//! The webhook step's HTTP POST (SPEC §11): the body rendered from its template, signed the
//! Standard Webhooks way, sent to an allowed host with a 10 s timeout, and the answer
//! classified once, here, as delivered, transient or permanent.
//!
//! `webhook_hosts` is checked again at send time (validate checks it too), so a campaign
//! file cannot make the daemon call an internal address such as a cloud metadata service.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nurture_campaign::WebhookAction;
use nurture_campaign::scoring::{host_allowed, url_host};
use nurture_token::WebhookSigner;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::TlsTrust;

/// How long one POST may take, connection included.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a reply is kept for `explain`.
const REPLY_KEPT: usize = 300;

/// The answer to a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookReply {
    /// 2xx: the status and the start of the reply body.
    Delivered(String),
    /// Worth retrying: 5xx, 408, 429, a timeout, a refused or reset connection.
    Transient(String),
    /// Retrying cannot help: another status, a host not allowed, a body that cannot render.
    Permanent(String),
}

impl WebhookReply {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// POSTs webhook steps.
#[derive(Clone)]
pub struct WebhookClient {
    signer: Option<WebhookSigner>,
    hosts: Arc<Vec<String>>,
    trust: Arc<TlsTrust>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn target(url: &str) -> Result<Target, String> {
    let host = url_host(url)?;
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (false, url.strip_prefix("http://").unwrap_or(url)),
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = path.split('#').next().unwrap_or_default();
    let path = if path.is_empty() || path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let port_text = authority
        .rsplit_once(':')
        .map(|(h, p)| (h.ends_with(']') || !h.contains(':'), p));
    let port = match port_text {
        Some((true, p)) => p
            .parse()
            .map_err(|_| format!("`{url}` has an invalid port"))?,
        _ if tls => 443,
        _ => 80,
    };
    Ok(Target {
        tls,
        host,
        port,
        path,
    })
}

/// Renders every text in `body` as a Handlebars template over `context` (strict: a missing
/// variable is an error; nothing is HTML-escaped, the result is JSON).
pub fn render_body(body: &Value, context: &Value) -> Result<Value, String> {
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    fn walk(hb: &handlebars::Handlebars<'_>, v: &Value, ctx: &Value) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) => Value::String(
                hb.render_template(s, ctx)
                    .map_err(|e| format!("the webhook body does not render: {e}"))?,
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| walk(hb, i, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| walk(hb, v, ctx).map(|v| (k.clone(), v)))
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }
    walk(&hb, body, context)
}

impl WebhookClient {
    /// A client signing with `secret` (`webhook_secret`) and calling only `hosts`
    /// (`webhook_hosts`), trusting `trust` for HTTPS.
    pub fn new(secret: Option<&str>, hosts: Vec<String>, trust: Arc<TlsTrust>) -> Self {
        Self {
            signer: secret.map(WebhookSigner::new),
            hosts: Arc::new(hosts),
            trust,
            timeout: WEBHOOK_TIMEOUT,
        }
    }

    /// POSTs one delivery: the rendered body (or `context` itself), with `webhook-id`
    /// `id` and `webhook-timestamp` `timestamp` (Unix seconds), signed.
    pub async fn post(
        &self,
        hook: &WebhookAction,
        id: &str,
        context: &Value,
        timestamp: i64,
    ) -> WebhookReply {
        let Some(signer) = &self.signer else {
            return WebhookReply::Permanent(
                "webhook_secret is not set: nurture signs every webhook".into(),
            );
        };
        let target = match target(&hook.url) {
            Ok(t) => t,
            Err(e) => return WebhookReply::Permanent(e),
        };
        if !host_allowed(&target.host, &self.hosts) {
            return WebhookReply::Permanent(format!(
                "the host `{}` is not in webhook_hosts",
                target.host
            ));
        }
        let body = match &hook.body {
            Some(template) => match render_body(template, context) {
                Ok(b) => b,
                Err(e) => return WebhookReply::Permanent(e),
            },
            None => context.clone(),
        };
        let body = body.to_string();
        let signature = signer.sign(id, timestamp, body.as_bytes());
        let request = hyper::Request::post(&target.path)
            .header(
                hyper::header::HOST,
                if (target.tls && target.port == 443) || (!target.tls && target.port == 80) {
                    target.host.clone()
                } else {
                    format!("{}:{}", target.host, target.port)
                },
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "nurture-webhook")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(r) => r,
            Err(e) => return WebhookReply::Permanent(format!("cannot build the request: {e}")),
        };
        match tokio::time::timeout(self.timeout, self.send(&target, request)).await {
            Err(_) => {
                WebhookReply::Transient(format!("no answer within {} s", self.timeout.as_secs()))
            }
            Ok(Err(e)) => WebhookReply::Transient(e),
            Ok(Ok((status, reply))) => classify(status, &reply),
        }
    }

    async fn send(
        &self,
        target: &Target,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(u16, String), String> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", target.host, target.port))?;
        let _ = tcp.set_nodelay(true);
        if !target.tls {
            return exchange(tcp, request).await;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(self.trust.root_store())
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| format!("`{}` is not a TLS server name: {e}", target.host))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {} failed: {e}", target.host))?;
        exchange(tls, request).await
    }
}

async fn exchange<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the connection failed: {e}"))?;
    let status = response.status().as_u16();
    // Only the start of the reply is kept; a receiver that streams forever is cut by the
    // caller's timeout.
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < REPLY_KEPT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    kept.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    driver.abort();
    kept.truncate(REPLY_KEPT);
    Ok((status, String::from_utf8_lossy(&kept).trim().to_string()))
}

/// The one decision of what a status means (SPEC §11: 5xx retried, other 4xx fail).
fn classify(status: u16, reply: &str) -> WebhookReply {
    let text = if reply.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {reply}")
    };
    match status {
        200..=299 => WebhookReply::Delivered(text),
        408 | 429 | 500..=599 => WebhookReply::Transient(text),
        _ => WebhookReply::Permanent(text),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_are_classified_once() {
        assert!(matches!(classify(204, ""), WebhookReply::Delivered(_)));
        assert!(classify(503, "busy").is_transient());
        assert!(classify(429, "").is_transient());
        assert_eq!(
            classify(404, "no"),
            WebhookReply::Permanent("HTTP 404: no".into())
        );
    }

    #[test]
    fn urls_become_targets() {
        let t = target("http://127.0.0.1:8099/hooks/lead?x=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (false, "127.0.0.1", 8099, "/hooks/lead?x=1")
        );
        let t = target("https://crm.example.com").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (true, 443, "/"));
    }

    #[test]
    fn body_templates_render_to_json() {
        let ctx = json!({"contact": {"email": "a@x.example", "name": "Ann <CTO>"}, "score": 62.5});
        let body = json!({"text": "{{contact.name}} scored {{score}}", "n": 3});
        assert_eq!(
            render_body(&body, &ctx).unwrap(),
            json!({"text": "Ann <CTO> scored 62.5", "n": 3})
        );
        assert!(render_body(&json!("{{contact.phone}}"), &ctx).is_err());
    }

    #[tokio::test]
    async fn a_host_outside_the_allow_list_is_never_called() {
        let client = WebhookClient::new(
            Some("s"),
            vec!["hooks.example.com".into()],
            TlsTrust::system(),
        );
        let hook = WebhookAction {
            url: "http://169.254.169.254/latest/meta-data".into(),
            host: "169.254.169.254".into(),
            body: None,
        };
        let reply = client.post(&hook, "id", &json!({}), 0).await;
        assert_eq!(
            reply,
            WebhookReply::Permanent("the host `169.254.169.254` is not in webhook_hosts".into())
        );
    }
}
