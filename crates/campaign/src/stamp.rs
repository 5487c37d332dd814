//! [`stamp`]: the names and modification times of every file under the watched folders
//! (campaigns, templates, forms), so the daemon notices an edit by comparing two stamps
//! instead of re-reading and re-validating everything each round.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Every file under some folders with its modification time (`None` when unreadable),
/// sorted by path.
pub type Stamp = Vec<(PathBuf, Option<SystemTime>)>;

/// The [`Stamp`] of the files under `dirs` (recursively); a missing or unreadable folder
/// contributes nothing.
pub fn stamp(dirs: &[&Path]) -> Stamp {
    let mut out = Vec::new();
    for dir in dirs {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let m = e.metadata().ok().and_then(|m| m.modified().ok());
                    out.push((p, m));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    #[test]
    fn a_stamp_lists_nested_files_in_order_and_changes_with_an_edit_or_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let campaigns = dir.path().join("campaigns");
        let templates = dir.path().join("templates");
        std::fs::create_dir_all(campaigns.join("sub")).unwrap();
        std::fs::write(campaigns.join("b.yaml"), "b").unwrap();
        std::fs::write(campaigns.join("sub/a.yaml"), "a").unwrap();
        let missing = dir.path().join("forms");
        let before = stamp(&[&campaigns, &templates, &missing]);
        let names: Vec<PathBuf> = before.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            names,
            [campaigns.join("b.yaml"), campaigns.join("sub/a.yaml")]
        );
        assert!(before.iter().all(|(_, m)| m.is_some()));
        assert_eq!(stamp(&[&campaigns, &templates, &missing]), before);

        let file = std::fs::File::options()
            .write(true)
            .open(campaigns.join("b.yaml"))
            .unwrap();
        let later = before[0].1.unwrap() + Duration::from_secs(5);
        file.set_modified(later).unwrap();
        let edited = stamp(&[&campaigns, &templates, &missing]);
        assert_ne!(edited, before);
        assert_eq!(edited[0].1, Some(later));

        std::fs::create_dir_all(&templates).unwrap();
        std::fs::write(templates.join("welcome.html.hbs"), "hi").unwrap();
        assert_eq!(stamp(&[&campaigns, &templates, &missing]).len(), 3);
    }
}
