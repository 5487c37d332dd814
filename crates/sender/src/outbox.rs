//! The embedded default transport: each message becomes an `.eml` file in a folder.

use std::path::{Path, PathBuf};

use crate::message::BuiltMessage;

/// Writes messages into a folder, atomically (a temp name, then a rename), so a reader never
/// sees half a message.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// An outbox in `dir` (created on the first message).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one message; returns the file's path.
    pub fn write(&self, m: &BuiltMessage, stamp: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let id: String = m
            .message_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
            .collect();
        let name = format!("{stamp}-{id}.eml");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &m.bytes)?;
        let path = self.dir.join(name);
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}
