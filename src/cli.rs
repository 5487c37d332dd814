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
    /// More logging (-v info, -vv debug for nurture itself, -vvv everything); NURTURE_LOG takes a
    /// tracing filter.
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
    /// Print the JSON Schema of the campaign format (or, with --forms, of the form format),
    /// for editor completion.
    Schema {
        /// The schema of `forms/*.yaml` instead.
        #[arg(long)]
        forms: bool,
    },
    /// Public sign-up forms.
    #[command(subcommand)]
    Forms(FormsCommand),
    /// Apply database migrations.
    Migrate,
    /// Do everything due as of now (or --now) and exit: for cron and tests.
    Tick {
        /// Treat this RFC 3339 time as the current time.
        #[arg(long, value_name = "RFC3339")]
        now: Option<String>,
    },
    /// The daemon: triggers, scheduler, sender and HTTP server, until SIGTERM/SIGINT.
    Run,
    /// Record an event for a contact (creating or updating it); this triggers campaigns.
    Event {
        /// The contact's email address.
        email: String,
        /// Event name, e.g. lead.captured.
        name: String,
        /// Event property, k=v (repeatable).
        #[arg(long = "prop", value_name = "K=V")]
        props: Vec<String>,
        /// Contact attribute to set, k=v (repeatable).
        #[arg(long = "attr", value_name = "K=V")]
        attrs: Vec<String>,
        /// When it happened (default now).
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Idempotency id: a repeated id is ignored.
        #[arg(long)]
        id: Option<String>,
    },
    /// Enroll a contact in a campaign by hand (obeys audience and reentry).
    Enroll {
        /// Campaign id.
        campaign: String,
        /// The contact's email address.
        email: String,
        /// Treat this RFC 3339 time as the current time.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
    },
    /// Render a campaign's email steps (or one) and send them now to ADDR, with [TEST] before
    /// the subject; changes no enrollment and no stats.
    TestSend {
        /// Campaign id.
        campaign: String,
        /// Where to send.
        #[arg(long, value_name = "ADDR")]
        to: String,
        /// Only this step.
        #[arg(long, value_name = "ID")]
        step: Option<String>,
        /// Render with this stored contact's data.
        #[arg(long, value_name = "EMAIL", conflicts_with = "data")]
        contact: Option<String>,
        /// Render with the data in this JSON file: {"contact": {...}, "event": {...}}.
        #[arg(long, value_name = "FILE.json")]
        data: Option<PathBuf>,
    },
    /// Print one email step's rendered message without sending it.
    Preview {
        /// Campaign id.
        campaign: String,
        /// The step.
        #[arg(long, value_name = "ID")]
        step: String,
        /// Render with this stored contact's data.
        #[arg(long, value_name = "EMAIL", conflicts_with = "data")]
        contact: Option<String>,
        /// Render with the data in this JSON file: {"contact": {...}, "event": {...}}.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Format::Html)]
        format: Format,
    },
    /// Run a campaign for one lead on a throwaway database with a virtual clock and print the
    /// timeline: every step's time, outcome and reason. Touches no real data, sends nothing.
    Simulate {
        /// Campaign id (or the path of a campaign file).
        campaign: String,
        /// Simulate this stored contact (its data is only read).
        #[arg(long, value_name = "EMAIL", conflicts_with = "data")]
        contact: Option<String>,
        /// Simulate the lead in this JSON file: {"contact": {...}, "event": {...}}.
        #[arg(long, value_name = "FILE.json")]
        data: Option<PathBuf>,
        /// What the lead does, in YAML: `- {at: 2d, clicked: case-study}`.
        #[arg(long, value_name = "FILE.yaml")]
        events: Option<PathBuf>,
        /// When the lead enters (default now).
        #[arg(long, value_name = "RFC3339")]
        start: Option<String>,
        /// How many days to simulate.
        #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Why a contact got, or did not get, each step: enrollments, step outcomes and their
    /// reasons, postponements, SMTP attempts, suppression.
    Explain {
        /// The contact's email address.
        email: String,
        /// Only this campaign.
        campaign: Option<String>,
    },
    /// Compare campaign files with the versions in use: changed steps, how many active leads
    /// each change touches and where they will go. Changes nothing.
    Plan {
        /// Campaign files or folders (default: campaigns_dir).
        paths: Vec<PathBuf>,
    },
    /// Manage contacts.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Bounces and complaints reported after the fact.
    #[command(subcommand)]
    Bounces(BouncesCommand),
    /// Per campaign and per step counts.
    Stats {
        /// Only this campaign.
        campaign: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Output of `preview`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The HTML part.
    Html,
    /// The text part.
    Text,
    /// The whole message as sent.
    Eml,
}

#[derive(Debug, Subcommand)]
pub enum FormsCommand {
    /// Print HTML that embeds the form in another site's page.
    Snippet {
        /// The form's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Upsert contacts from a CSV file with an `email` column.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Tag every imported contact (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Record this event for every imported contact (triggers campaigns).
        #[arg(long, value_name = "NAME")]
        event: Option<String>,
        /// Treat this RFC 3339 time as the current time.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
    },
    /// Status, tags, attributes, enrollments and messages of a contact.
    Show {
        /// The contact's email address.
        email: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Suppress a contact: no more mail, from any campaign.
    Unsubscribe {
        /// The contact's email address.
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BouncesCommand {
    /// Read delivery status notifications (RFC 3464) and abuse reports (RFC 5965 ARF), one
    /// message per file (`-` for standard input, the default), and apply them: a hard
    /// bounce or a complaint suppresses the contact; other mail is ignored with a note.
    Ingest {
        /// Message files (.eml), or `-` for standard input.
        files: Vec<PathBuf>,
        /// Treat this RFC 3339 time as the current time.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
    },
}
