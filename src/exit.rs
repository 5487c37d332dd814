//! Exit codes (SPEC §7): 0 success, 1 runtime failure, 2 invalid input. Errors print one
//! clear sentence first, then their causes.

use std::process::ExitCode;

/// Marks an error as the user's input being invalid (exit 2) rather than a runtime failure.
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// An `anyhow` error for invalid input.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InvalidInput(message.into()))
}

/// Prints the error and returns its exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    if err.chain().any(|e| e.is::<InvalidInput>()) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
