//! One module per command; each turns parsed arguments into calls on the library crates.

mod templates;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// Runs the command and returns the exit code for a normal finish.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(&cli.global)?;
    match cli.command {
        Command::Validate { paths } => validate::validate(&config, &paths),
        Command::Schema => {
            println!("{}", nurture_campaign::schema::json_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
}
