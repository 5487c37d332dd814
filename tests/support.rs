//! A temp project folder and a way to run the binary in it with a clean environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A folder with `campaigns/` and `templates/`, like a user's checkout
/// ([`nurture_testkit::TempProject`]), and the binary run in it.
pub struct Project {
    dir: nurture_testkit::TempProject,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: nurture_testkit::TempProject::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating folders).
    pub fn file(&self, rel: &str, contents: &str) -> &Self {
        self.dir.file(rel, contents);
        self
    }

    /// Copies the repository's example campaigns and templates in.
    pub fn with_examples(&self) -> &Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("campaigns"), &self.path().join("campaigns"));
        copy_dir(&root.join("templates"), &self.path().join("templates"));
        self
    }

    /// The binary, run in this folder, with every `NURTURE_*` variable removed.
    pub fn nurture(&self, args: &[&str]) -> Run {
        let mut cmd = self.dir.command(Path::new(env!("CARGO_BIN_EXE_nurture")));
        cmd.args(args).env("NO_COLOR", "1");
        Run { cmd }
    }
}

/// A command about to run.
pub struct Run {
    cmd: Command,
}

impl Run {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// Starts it in the background.
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.cmd.spawn().unwrap()
    }

    pub fn output(mut self) -> Done {
        let out: Output = self.cmd.output().unwrap();
        Done {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What a run printed and returned.
#[derive(Debug)]
pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Done {
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let mut stack: Vec<PathBuf> = vec![from.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(from).unwrap();
            if p.is_dir() {
                std::fs::create_dir_all(to.join(rel)).unwrap();
                stack.push(p);
            } else {
                std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
                std::fs::copy(&p, to.join(rel)).unwrap();
            }
        }
    }
}
