//! The embedded default transport: each message becomes an `.eml` file in a folder.

use std::io::Write as _;
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
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&m.bytes)?;
            // On disk before it gets its real name: a crash never leaves an empty `.eml`.
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let path = self.dir.join(name);
        std::fs::rename(&tmp, &path)?;
        tracing::debug!(path = %path.display(), "message written to the outbox");
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(id: &str) -> BuiltMessage {
        BuiltMessage {
            from: "a@x.example".into(),
            to: "b@x.example".into(),
            message_id: id.into(),
            bytes: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        }
    }

    #[test]
    fn writes_whole_files_with_safe_names_into_a_created_folder() {
        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(root.path().join("out/box"));
        let a = outbox
            .write(&built("<abc123@x.example>"), "20261122T120000.000Z")
            .unwrap();
        let b = outbox
            .write(
                &built("<../../etc/passwd@x.example>"),
                "20261122T120000.000Z",
            )
            .unwrap();
        assert_eq!(
            a.file_name().unwrap(),
            "20261122T120000.000Z-abc123@x.example.eml"
        );
        assert_eq!(b.parent(), Some(outbox.dir()), "{}", b.display());
        assert_eq!(std::fs::read(&a).unwrap(), built("x").bytes);
        let names: Vec<_> = std::fs::read_dir(outbox.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temp files left: {names:?}");
        assert!(names.iter().all(|n| n.ends_with(".eml")), "{names:?}");
    }
}
