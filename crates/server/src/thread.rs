//! [`ServerThread`]: the HTTP server on a thread and a runtime of its own, so that a busy
//! delivery round (the daemon's thread polls every SMTP connection) never delays `/healthz`
//! or an ingest call. It has its own connection pool too: a pool's connections belong to the
//! runtime that opened them.

use tokio::sync::oneshot;

use crate::AppState;

/// Why the server thread did not start.
#[derive(Debug)]
pub enum StartError {
    /// The thread, its runtime or its listener could not be set up.
    Io(std::io::Error),
    /// The server's own pool could not be opened.
    Database(nurture_store::StoreError),
    /// The thread ended before saying whether it started.
    NotStarted,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Database(e) => write!(f, "cannot open the database: {e}"),
            Self::NotStarted => f.write_str("the HTTP server thread did not start"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The I/O error's own causes; the database error is already in the sentence.
            Self::Io(e) => e.source(),
            Self::Database(_) | Self::NotStarted => None,
        }
    }
}

/// A running HTTP server thread; [`ServerThread::stop`] ends it.
pub struct ServerThread {
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ServerThread {
    /// Serves on `listener` (bound and non-blocking) with a pool of its own on
    /// `database_url`, in the state `state` makes around that pool (what it shares with the
    /// daemon's loop, the counters and health say, it takes as `Arc`s); returns once serving,
    /// or fails if the runtime or the pool fails.
    pub async fn start(
        listener: std::net::TcpListener,
        database_url: String,
        state: impl FnOnce(nurture_store::Store) -> AppState + Send + 'static,
    ) -> Result<Self, StartError> {
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), StartError>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nurture-http".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StartError::Io(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let opened = async {
                        let listener =
                            tokio::net::TcpListener::from_std(listener).map_err(StartError::Io)?;
                        let store = nurture_store::Store::open(&database_url)
                            .await
                            .map_err(StartError::Database)?;
                        Ok::<_, StartError>((listener, store))
                    }
                    .await;
                    let (listener, store) = match opened {
                        Ok(o) => o,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let state = state(store.clone());
                    let _ = ready_tx.send(Ok(()));
                    let served = crate::serve(listener, state, async move {
                        let _ = stop_rx.await;
                    })
                    .await;
                    if let Err(e) = served {
                        tracing::error!("HTTP server: {e}");
                    }
                    store.close().await;
                });
                let _ = done_tx.send(());
            })
            .map_err(StartError::Io)?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Self {
                stop: stop_tx,
                done: done_rx,
                thread,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StartError::NotStarted),
        }
    }

    /// Stops accepting, lets requests in flight finish (bounded by the request timeout) and
    /// waits for the thread.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if self.done.await.is_err() {
            tracing::error!("the HTTP server thread ended abnormally");
        }
        // Done was sent (or the thread is gone): joining does not block.
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Read, Write};

    use std::sync::Arc;

    use tokio::sync::Notify;

    use super::*;
    use crate::{Forms, Health, Metrics, bounces};

    fn state(health: Arc<Health>) -> impl FnOnce(nurture_store::Store) -> AppState {
        move |store| AppState {
            store,
            signer: nurture_token::Signer::new("secret"),
            api_key: None,
            wake: Arc::new(Notify::new()),
            metrics: Arc::new(Metrics::new()),
            health,
            bounces: Arc::new(bounces::Webhooks::default()),
            dashboard: None,
            forms: Arc::new(Forms::none()),
        }
    }

    fn listener() -> std::net::TcpListener {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    }

    /// The status line of `GET path`, from a blocking client off the test's runtime.
    async fn get(addr: std::net::SocketAddr, path: &'static str) -> String {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out.lines().next().unwrap_or_default().to_string()
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn serves_on_its_own_thread_the_health_the_daemon_reports_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("n.db").display());
        let health = Arc::new(Health::new());
        let l = listener();
        let addr = l.local_addr().unwrap();
        let server = ServerThread::start(l, url, state(health.clone()))
            .await
            .unwrap();
        assert_eq!(get(addr, "/healthz").await, "HTTP/1.1 200 OK");
        health.round_failed("the database is away");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 503"));
        server.stop().await;
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[tokio::test]
    async fn a_database_it_cannot_open_fails_the_start() {
        let err = ServerThread::start(
            listener(),
            "nosuchdb://nowhere".into(),
            state(Arc::new(Health::new())),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, StartError::Database(_)), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot open the database: "),
            "{err}"
        );
    }
}
