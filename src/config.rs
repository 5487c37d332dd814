//! Configuration (SPEC §2): defaults, then `nurture.toml` (or `--config`/`NURTURE_CONFIG`),
//! then `NURTURE_*` variables, then flags. Secrets are wrapped so they never print.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::cli::Global;
use crate::exit::invalid;

/// A value that must never appear in logs or errors.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(#[allow(dead_code)] String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    #[allow(dead_code)]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<Secret>,
    campaigns_dir: Option<PathBuf>,
    templates_dir: Option<PathBuf>,
    smtp_url: Option<Secret>,
    smtp_timeout: Option<u64>,
    smtp_ca_file: Option<PathBuf>,
    outbox_dir: Option<PathBuf>,
    base_url: Option<String>,
    listen: Option<String>,
    secret: Option<Secret>,
    api_key: Option<Secret>,
    dashboard_password: Option<Secret>,
    default_timezone: Option<String>,
    rate_per_second: Option<u32>,
    postal_address: Option<String>,
    dkim_domain: Option<String>,
    dkim_selector: Option<String>,
    dkim_private_key: Option<Secret>,
    sendgrid_webhook_key: Option<String>,
    webhook_user: Option<String>,
    webhook_password: Option<Secret>,
    mailgun_signing_key: Option<Secret>,
    ses_topic_arns: Option<Vec<String>>,
    soft_bounce_limit: Option<u32>,
    frequency: Option<Vec<FrequencyRule>>,
    scoring_file: Option<PathBuf>,
    webhook_secret: Option<Secret>,
    webhook_hosts: Option<Vec<String>>,
    dkim_algorithm: Option<String>,
    forms_dir: Option<PathBuf>,
    form_min_fill_seconds: Option<u64>,
    form_ip_limit_per_minute: Option<u32>,
    form_pow_difficulty: Option<u32>,
}

/// One `[[frequency]]` table: at most `max` emails per contact in any `per`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrequencyRule {
    max: u32,
    per: String,
}

/// The frequency caps: `NURTURE_FREQUENCY` (`2/1d,5/1w`, or `none`) beats the file's
/// `[[frequency]]` tables.
fn frequency_caps(
    var: Option<String>,
    file: Option<Vec<FrequencyRule>>,
) -> anyhow::Result<Vec<nurture_scheduler::FrequencyCap>> {
    let rules: Vec<(u32, String, String)> = match var {
        Some(v) if v.trim() == "none" => Vec::new(),
        Some(v) => {
            let mut out = Vec::new();
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((max, per)) = part.split_once('/') else {
                    return Err(invalid(format!(
                        "NURTURE_FREQUENCY must look like `2/1d,5/1w` (max/per, comma-separated), not `{v}`"
                    )));
                };
                let max = max.trim().parse::<u32>().map_err(|_| {
                    invalid(format!(
                        "NURTURE_FREQUENCY: `{max}` in `{part}` is not a whole number of emails"
                    ))
                })?;
                out.push((
                    max,
                    per.trim().to_string(),
                    format!("NURTURE_FREQUENCY `{part}`"),
                ));
            }
            out
        }
        None => file
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r.max, r.per, format!("[[frequency]] table {}", i + 1)))
            .collect(),
    };
    let mut caps = Vec::new();
    for (max, per, at) in rules {
        if max == 0 {
            return Err(invalid(format!("{at}: `max` must be at least 1")));
        }
        let per: nurture_campaign::Delay = per.parse().map_err(|e| {
            invalid(format!(
                "{at}: `per = \"{per}\"` is not a duration ({e}); write e.g. `per = \"1d\"`"
            ))
        })?;
        if per.is_zero() {
            return Err(invalid(format!("{at}: `per` must be longer than zero")));
        }
        caps.push(nurture_scheduler::FrequencyCap { max, per });
    }
    Ok(caps)
}

/// The resolved configuration.
#[derive(Debug, Clone)]
#[allow(dead_code)] // keys are used as the commands that need them land
pub struct Config {
    pub database_url: Secret,
    pub campaigns_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub smtp_url: Option<Secret>,
    /// The base of every SMTP wait (nurture-sender derives the final reply's from it).
    pub smtp_timeout: std::time::Duration,
    /// A PEM bundle of certificate authorities SMTP TLS trusts besides the system's store.
    pub smtp_ca_file: Option<PathBuf>,
    pub outbox_dir: PathBuf,
    pub base_url: String,
    pub listen: String,
    pub secret: Option<Secret>,
    pub api_key: Option<Secret>,
    /// The dashboard's password; `None`: no dashboard (its routes answer 404).
    pub dashboard_password: Option<Secret>,
    pub default_timezone: chrono_tz::Tz,
    pub rate_per_second: u32,
    pub postal_address: Option<String>,
    pub dkim_domain: Option<String>,
    pub dkim_selector: Option<String>,
    pub dkim_private_key: Option<Secret>,
    /// SendGrid's event webhook verification key (base64 DER public key).
    pub sendgrid_webhook_key: Option<String>,
    /// Basic-auth user and password of the Postmark webhook.
    pub webhook_user: Option<String>,
    pub webhook_password: Option<Secret>,
    /// Mailgun's HTTP webhook signing key.
    pub mailgun_signing_key: Option<Secret>,
    /// The SNS topics whose SES notifications are taken.
    pub ses_topic_arns: Vec<String>,
    /// Soft bounces in a row that make a contact `bounced`.
    pub soft_bounce_limit: u32,
    /// Frequency caps across campaigns (SPEC §13); empty: none.
    pub frequency: Vec<nurture_scheduler::FrequencyCap>,
    /// Lead scoring rules (SPEC §11); optional file.
    pub scoring_file: PathBuf,
    /// Signs every webhook step (Standard Webhooks; `whsec_BASE64` or any text).
    pub webhook_secret: Option<Secret>,
    /// The hosts webhook steps may call (`*.example.com` for a domain's names).
    pub webhook_hosts: Vec<String>,
    /// `rsa` or `ed25519`: checked against the key, which decides (unset: the key's own).
    pub dkim_algorithm: Option<String>,
    /// Folder of the form definitions (`forms/*.yaml`).
    pub forms_dir: PathBuf,
    /// The form defences (minimum fill time, per-IP limit, proof-of-work difficulty).
    pub forms: nurture_server::FormSettings,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Resolves the configuration for a command.
    pub fn load(global: &Global) -> anyhow::Result<Self> {
        let file = match &global.config {
            Some(path) => read_file(path)?,
            None if Path::new("nurture.toml").exists() => read_file(Path::new("nurture.toml"))?,
            None => FileConfig::default(),
        };
        let pick_secret = |flag: Option<&String>, var: &str, file: Option<Secret>| {
            flag.cloned().or_else(|| env(var)).map(Secret).or(file)
        };
        let pick_path =
            |flag: Option<&PathBuf>, var: &str, file: Option<PathBuf>, default: &str| {
                flag.cloned()
                    .or_else(|| env(var).map(PathBuf::from))
                    .or(file)
                    .unwrap_or_else(|| PathBuf::from(default))
            };
        let pick = |var: &str, file: Option<String>| env(var).or(file);

        let tz_name =
            pick("NURTURE_DEFAULT_TIMEZONE", file.default_timezone).unwrap_or_else(|| "UTC".into());
        let default_timezone = tz_name.parse::<chrono_tz::Tz>().map_err(|_| {
            invalid(format!(
                "default_timezone `{tz_name}` is not an IANA time zone name"
            ))
        })?;
        let rate_per_second = match env("NURTURE_RATE_PER_SECOND") {
            Some(v) => v.parse::<u32>().ok().filter(|r| *r > 0).ok_or_else(|| {
                invalid(format!(
                    "NURTURE_RATE_PER_SECOND must be a positive whole number, not `{v}`"
                ))
            })?,
            None => file.rate_per_second.unwrap_or(100),
        };
        if rate_per_second == 0 {
            return Err(invalid("rate_per_second must be at least 1"));
        }
        let smtp_timeout = match env("NURTURE_SMTP_TIMEOUT") {
            Some(v) => v.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                invalid(format!(
                    "NURTURE_SMTP_TIMEOUT must be a positive whole number of seconds, not `{v}`"
                ))
            })?,
            None => match file.smtp_timeout {
                Some(0) => return Err(invalid("smtp_timeout must be at least 1 (seconds)")),
                Some(s) => s,
                None => nurture_sender::DEFAULT_SMTP_TIMEOUT.as_secs(),
            },
        };
        let soft_bounce_limit = match env("NURTURE_SOFT_BOUNCE_LIMIT") {
            Some(v) => v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                invalid(format!(
                    "NURTURE_SOFT_BOUNCE_LIMIT must be a positive whole number, not `{v}`"
                ))
            })?,
            None => match file.soft_bounce_limit {
                Some(0) => return Err(invalid("soft_bounce_limit must be at least 1")),
                Some(n) => n,
                None => nurture_server::bounces::DEFAULT_SOFT_BOUNCE_LIMIT,
            },
        };
        let ses_topic_arns = match env("NURTURE_SES_TOPIC_ARNS") {
            Some(v) => v
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            None => file.ses_topic_arns.unwrap_or_default(),
        };
        let frequency = frequency_caps(env("NURTURE_FREQUENCY"), file.frequency)?;
        let number =
            |var: &str, file: Option<u64>, default: u64, max: u64| -> anyhow::Result<u64> {
                match env(var) {
                    Some(v) => v.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
                        invalid(format!(
                            "{var} must be a whole number from 0 to {max}, not `{v}`"
                        ))
                    }),
                    None => match file {
                        Some(n) if n > max => Err(invalid(format!(
                            "{} must be at most {max}",
                            var.trim_start_matches("NURTURE_").to_lowercase()
                        ))),
                        Some(n) => Ok(n),
                        None => Ok(default),
                    },
                }
            };
        let forms = nurture_server::FormSettings {
            min_fill_ms: number(
                "NURTURE_FORM_MIN_FILL_SECONDS",
                file.form_min_fill_seconds,
                3,
                3600,
            )? as i64
                * 1000,
            per_ip_per_minute: number(
                "NURTURE_FORM_IP_LIMIT_PER_MINUTE",
                file.form_ip_limit_per_minute.map(u64::from),
                20,
                100_000,
            )?
            .max(1) as u32,
            pow_difficulty: number(
                "NURTURE_FORM_POW_DIFFICULTY",
                file.form_pow_difficulty.map(u64::from),
                12,
                24,
            )? as u32,
            ..nurture_server::FormSettings::default()
        };
        Ok(Self {
            forms_dir: pick_path(None, "NURTURE_FORMS_DIR", file.forms_dir.clone(), "forms"),
            forms,
            frequency,
            database_url: pick_secret(
                global.database_url.as_ref(),
                "NURTURE_DATABASE_URL",
                file.database_url,
            )
            .unwrap_or_else(|| Secret("sqlite://nurture.db".into())),
            campaigns_dir: pick_path(
                global.campaigns_dir.as_ref(),
                "NURTURE_CAMPAIGNS_DIR",
                file.campaigns_dir,
                "campaigns",
            ),
            templates_dir: pick_path(
                global.templates_dir.as_ref(),
                "NURTURE_TEMPLATES_DIR",
                file.templates_dir,
                "templates",
            ),
            smtp_url: pick_secret(None, "NURTURE_SMTP_URL", file.smtp_url),
            smtp_timeout: std::time::Duration::from_secs(smtp_timeout),
            smtp_ca_file: env("NURTURE_SMTP_CA_FILE")
                .map(PathBuf::from)
                .or(file.smtp_ca_file),
            outbox_dir: pick_path(None, "NURTURE_OUTBOX_DIR", file.outbox_dir, "outbox"),
            base_url: pick("NURTURE_BASE_URL", file.base_url)
                .unwrap_or_else(|| "http://127.0.0.1:8080".into())
                .trim_end_matches('/')
                .to_string(),
            listen: pick("NURTURE_LISTEN", file.listen).unwrap_or_else(|| "127.0.0.1:8080".into()),
            secret: pick_secret(None, "NURTURE_SECRET", file.secret),
            api_key: pick_secret(None, "NURTURE_API_KEY", file.api_key),
            dashboard_password: pick_secret(
                None,
                "NURTURE_DASHBOARD_PASSWORD",
                file.dashboard_password,
            )
            .filter(|p| !p.expose().is_empty()),
            default_timezone,
            rate_per_second,
            postal_address: pick("NURTURE_POSTAL_ADDRESS", file.postal_address),
            dkim_domain: pick("NURTURE_DKIM_DOMAIN", file.dkim_domain),
            dkim_selector: pick("NURTURE_DKIM_SELECTOR", file.dkim_selector),
            dkim_private_key: pick_secret(None, "NURTURE_DKIM_PRIVATE_KEY", file.dkim_private_key),
            sendgrid_webhook_key: pick("NURTURE_SENDGRID_WEBHOOK_KEY", file.sendgrid_webhook_key),
            webhook_user: pick("NURTURE_WEBHOOK_USER", file.webhook_user),
            webhook_password: pick_secret(None, "NURTURE_WEBHOOK_PASSWORD", file.webhook_password),
            mailgun_signing_key: pick_secret(
                None,
                "NURTURE_MAILGUN_SIGNING_KEY",
                file.mailgun_signing_key,
            ),
            ses_topic_arns,
            soft_bounce_limit,
            scoring_file: pick_path(
                None,
                "NURTURE_SCORING_FILE",
                file.scoring_file,
                "scoring.yaml",
            ),
            webhook_secret: pick_secret(None, "NURTURE_WEBHOOK_SECRET", file.webhook_secret),
            webhook_hosts: env("NURTURE_WEBHOOK_HOSTS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .or(file.webhook_hosts)
                .unwrap_or_default(),
            dkim_algorithm: pick("NURTURE_DKIM_ALGORITHM", file.dkim_algorithm),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        invalid(format!(
            "invalid configuration file {}: {e}",
            path.display()
        ))
    })
}
