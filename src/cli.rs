//! Command-line arguments (SPEC §7).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// nurture: email-nurturing campaigns as YAML, drips on SQLite or PostgreSQL, SMTP delivery.
#[derive(Debug, Parser)]
#[command(name = "nurture", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes; each beats its `NURTURE_*` variable, which beats the file.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file (default: nurture.toml in the working directory, if present).
    #[arg(long, global = true, env = "NURTURE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Database: sqlite://PATH or postgres://...
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Folder of campaign files.
    #[arg(long, global = true, value_name = "DIR")]
    pub campaigns_dir: Option<PathBuf>,
    /// Folder of Handlebars templates.
    #[arg(long, global = true, value_name = "DIR")]
    pub templates_dir: Option<PathBuf>,
    /// More logging (-v info, -vv debug); NURTURE_LOG takes a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check campaigns and their templates; exit 2 on any error.
    Validate {
        /// Campaign files or folders (default: campaigns_dir).
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the campaign format, for editor completion.
    Schema,
}
