//! A user's project folder in miniature, for end-to-end tests that run the real binary.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// A temp folder laid out like a user's checkout: `campaigns/` and `templates/`.
///
/// The folder is removed when the value is dropped.
///
/// ```no_run
/// # fn demo(nurture_bin: &std::path::Path) {
/// use nurture_testkit::TempProject;
///
/// let project = TempProject::new();
/// project
///     .file("campaigns/welcome.yaml", "name: welcome\n")
///     .file("templates/hello.md", "Hello!\n");
/// let output = project
///     .command(nurture_bin) // in tests: Path::new(env!("CARGO_BIN_EXE_nurture"))
///     .arg("validate")
///     .output()
///     .unwrap();
/// assert!(output.status.success());
/// # }
/// ```
#[derive(Debug)]
pub struct TempProject {
    dir: TempDir,
}

impl TempProject {
    /// Creates an empty project: a fresh temp folder with `campaigns/` and `templates/`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nurture-project.")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp folder: {e}"));
        for sub in ["campaigns", "templates"] {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        }
        Self { dir }
    }

    /// Writes `contents` to `rel_path` inside the project, creating parent folders and
    /// replacing any file already there. Returns `self` so calls can be chained.
    #[track_caller]
    pub fn file(&self, rel_path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.dir.path().join(rel_path.as_ref());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self
    }

    /// The project folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command running `bin` in the project folder, with every `NURTURE_*` environment
    /// variable of the test process removed, so a developer's settings (or the test script's
    /// `NURTURE_TEST_POSTGRES_URL`) never leak into the run. Set what the test needs with
    /// [`Command::env`].
    pub fn command(&self, bin: &Path) -> Command {
        let mut command = Command::new(bin);
        command.current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NURTURE_") {
                command.env_remove(key);
            }
        }
        command
    }
}

impl Default for TempProject {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_project_has_campaigns_and_templates() {
        let project = TempProject::new();
        assert!(project.path().join("campaigns").is_dir());
        assert!(project.path().join("templates").is_dir());
    }

    #[test]
    fn file_creates_parent_folders() {
        let project = TempProject::new();
        project
            .file("templates/emails/deep/hello.md", "Hi")
            .file("campaigns/a.yaml", "name: a\n");
        let text =
            std::fs::read_to_string(project.path().join("templates/emails/deep/hello.md")).unwrap();
        assert_eq!(text, "Hi");
        assert!(project.path().join("campaigns/a.yaml").is_file());
    }

    #[test]
    fn command_runs_in_project_without_nurture_variables() {
        let project = TempProject::new();
        let mut command = project.command(Path::new("/bin/sh"));
        command
            .env("NURTURE_SET_BY_TEST", "kept")
            .args(["-c", "pwd; env"]);
        let output = command.output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let cwd = stdout.lines().next().unwrap();
        assert_eq!(
            Path::new(cwd).canonicalize().unwrap(),
            project.path().canonicalize().unwrap()
        );
        // Variables set on the command after `command()` are kept; inherited ones are gone.
        let nurture_vars: Vec<&str> = stdout
            .lines()
            .skip(1)
            .filter(|l| l.starts_with("NURTURE_"))
            .collect();
        assert_eq!(nurture_vars, ["NURTURE_SET_BY_TEST=kept"]);
    }
}
