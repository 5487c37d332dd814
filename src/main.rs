//! `nurture`: the command-line entry point. Parses arguments, loads configuration and hands
//! each command to the library crates; nothing here decides campaign or delivery behaviour.

/// `println!` that ignores a closed stdout (`nurture stats | head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod cli;
mod cmd;
mod config;
mod delivery;
mod exit;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.global.verbose);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        // Our crates only: the HTML parser and the template engine log every token at debug.
        2 => {
            "warn,nurture=debug,nurture_campaign=debug,nurture_store=debug,nurture_scheduler=debug,nurture_sender=debug,nurture_server=debug,sqlx=info"
        }
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("NURTURE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
