//! A real server on a free port with its own SQLite file, and a minimal HTTP/1.1 client
//! that writes requests by hand, so the tests see exactly what a browser or a mailbox
//! provider would.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nurture_server::{AppState, Health, Limits, Metrics};
use nurture_store::{NewEnrollment, Store, Upsert};
use nurture_token::{Claim, Signer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

pub const API_KEY: &str = "test-api-key-7f3a";
pub const SECRET: &str = "test-signing-secret";
pub const CAMPAIGN: &str = "welcome";
pub const STEP: &str = "intro";

/// A running server and what it runs on.
pub struct TestApp {
    pub addr: SocketAddr,
    pub store: Store,
    pub signer: Signer,
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The SQLite file's URL, for a second connection.
    pub db_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

/// A seeded contact with an active enrollment and one queued message.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub contact_id: i64,
    pub enrollment_id: i64,
    pub message_id: i64,
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn ms(t: &str) -> i64 {
    DateTime::parse_from_rfc3339(t)
        .unwrap()
        .with_timezone(&Utc)
        .timestamp_millis()
}

/// Starts a server with this API key (or none).
pub async fn spawn_app(api_key: Option<&str>) -> TestApp {
    spawn_app_with(api_key, Limits::default()).await
}

/// Starts a server with this API key (or none) and these limits.
pub async fn spawn_app_with(api_key: Option<&str>, limits: Limits) -> TestApp {
    spawn_app_all(
        api_key,
        limits,
        nurture_server::bounces::Webhooks::default(),
        None,
        nurture_server::Forms::none(),
    )
    .await
}

/// Starts a server with this API key (or none), these limits and these bounce webhooks.
pub async fn spawn_app_full(
    api_key: Option<&str>,
    limits: Limits,
    bounces: nurture_server::bounces::Webhooks,
) -> TestApp {
    spawn_app_all(
        api_key,
        limits,
        bounces,
        None,
        nurture_server::Forms::none(),
    )
    .await
}

/// Starts a server with this API key, these limits and this dashboard (or none).
pub async fn spawn_app_dashboard(
    api_key: Option<&str>,
    limits: Limits,
    dashboard: Option<Arc<nurture_server::Dashboard>>,
) -> TestApp {
    spawn_app_all(
        api_key,
        limits,
        nurture_server::bounces::Webhooks::default(),
        dashboard,
        nurture_server::Forms::none(),
    )
    .await
}

/// Starts a server that serves these forms.
pub async fn spawn_app_with_forms(forms: nurture_server::Forms) -> TestApp {
    spawn_app_all(
        None,
        Limits::default(),
        nurture_server::bounces::Webhooks::default(),
        None,
        forms,
    )
    .await
}

/// Starts a server with everything chosen.
pub async fn spawn_app_all(
    api_key: Option<&str>,
    limits: Limits,
    bounces: nurture_server::bounces::Webhooks,
    dashboard: Option<Arc<nurture_server::Dashboard>>,
    forms: nurture_server::Forms,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nurture.db").display());
    let store = Store::open(&url).await.unwrap();
    let signer = Signer::new(SECRET);
    let wake = Arc::new(Notify::new());
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let state = AppState {
        store: store.clone(),
        signer: signer.clone(),
        api_key: api_key.map(str::to_string),
        wake: wake.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        bounces: Arc::new(bounces),
        dashboard,
        forms: Arc::new(forms),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(nurture_server::serve_with(
        listener,
        state,
        limits,
        async move {
            let _ = rx.await;
        },
    ));
    TestApp {
        addr,
        store,
        signer,
        wake,
        metrics,
        health,
        server,
        db_url: url,
        shutdown: Some(tx),
        _dir: dir,
    }
}

impl TestApp {
    /// Sends one request on a fresh connection and reads the whole response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // The server may answer (413) and stop reading before the body is all written.
        let _ = stream.write_all(body).await;
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw).await;
        assert!(
            read.is_ok() || !raw.is_empty(),
            "no response to {method} {path}: {read:?}"
        );
        parse(&raw)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"").await
    }

    /// A JSON POST with the right API key.
    pub async fn post_json(&self, path: &str, body: &str) -> Response {
        let auth = format!("Bearer {API_KEY}");
        self.request(
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await
    }

    pub fn link(&self, kind: &str, claim: &Claim) -> String {
        format!("/{kind}/{}", self.signer.sign(claim))
    }

    /// A contact enrolled in an active campaign, with a message queued due at `now`.
    pub async fn seed(&self, email: &str, now: i64) -> Seeded {
        let mut tx = self.store.begin().await.unwrap();
        let (contact, _) = tx
            .upsert_contact(
                &Upsert {
                    email: email.into(),
                    ..Upsert::default()
                },
                now,
            )
            .await
            .unwrap();
        let (version_id, _) = tx
            .put_campaign(CAMPAIGN, "fp-1", "{}", "active", now)
            .await
            .unwrap();
        let enrollment_id = tx
            .insert_enrollment(
                &NewEnrollment {
                    campaign_id: CAMPAIGN.into(),
                    contact_id: contact.id,
                    step_id: STEP.into(),
                    next_run_at: now + 86_400_000,
                    trigger_properties: serde_json::Map::new(),
                },
                now,
            )
            .await
            .unwrap()
            .unwrap();
        let message_id = tx
            .queue_message(
                enrollment_id,
                0,
                contact.id,
                CAMPAIGN,
                version_id,
                STEP,
                now,
                now,
            )
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        Seeded {
            contact_id: contact.id,
            enrollment_id,
            message_id,
        }
    }

    /// Stops the server gracefully and waits for `serve` to return.
    pub async fn shut_down(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.server).await.unwrap()
    }
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}
