//! Delivery wiring: which courier the engine hands due messages to.
//!
//! Until the sender crate lands this writes simple `.eml` files into `outbox_dir` (issue 3
//! allows it); the real renderer and SMTP transport replace it.

use std::future::Future;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use nurture_scheduler::{Courier, Delivered, Engine, Failure, Job};

use crate::config::Config;

/// Delivers everything due.
pub async fn deliver(
    config: &Config,
    engine: &Engine,
    now: DateTime<Utc>,
) -> anyhow::Result<Delivered> {
    let courier = SimpleOutbox {
        dir: config.outbox_dir.clone(),
        now,
    };
    Ok(engine.deliver(&courier, now, 1).await?)
}

struct SimpleOutbox {
    dir: PathBuf,
    now: DateTime<Utc>,
}

impl Courier for SimpleOutbox {
    type Prepared = (String, String);

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        let id = format!("<m{}.{}@nurture.local>", job.message.id, job.message.seq);
        let text = format!(
            "Message-ID: {id}\r\nDate: {}\r\nTo: {}\r\nSubject: {}\r\nX-Nurture-Campaign: {}\r\nX-Nurture-Step: {}\r\n\r\ntemplate {}\r\n",
            self.now.to_rfc2822(),
            job.contact.email,
            job.send.subject.replace(['\r', '\n'], " "),
            job.campaign.id,
            job.step.id,
            job.send.template
        );
        Ok((
            id,
            (format!("{}-{}.eml", job.message.id, job.step.id), text),
        ))
    }

    fn send(
        &self,
        prepared: Self::Prepared,
    ) -> impl Future<Output = Result<String, Failure>> + Send {
        let dir = self.dir.clone();
        async move {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Failure::Transient(format!("cannot create the outbox: {e}")))?;
            std::fs::write(dir.join(&prepared.0), prepared.1)
                .map_err(|e| Failure::Transient(format!("cannot write to the outbox: {e}")))?;
            Ok("written to the outbox".into())
        }
    }
}
