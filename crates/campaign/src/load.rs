//! Reading campaign files and folders: every file is parsed and checked, every problem is
//! collected, and campaign ids are checked for uniqueness across files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::decode::Decoder;
use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::model::Campaign;
use crate::yaml;

/// A campaign together with the file it came from and where each of its parts is written,
/// so later checks (templates) can point at the right line.
#[derive(Debug, Clone)]
pub struct CampaignFile {
    /// The file.
    pub source: SourceFile,
    /// The validated campaign.
    pub campaign: Campaign,
    /// Spans by key path: `id`, `from`, `layout`, `steps.0.send`, `steps.2.subject`, ...
    pub spans: BTreeMap<String, Span>,
}

impl CampaignFile {
    /// A diagnostic at the place the key path `key` is written (the file's start if unknown).
    pub fn diagnostic(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        let span = self
            .spans
            .get(key)
            .copied()
            .unwrap_or_else(|| self.source.span(0, 0));
        Diagnostic::at(&self.source, span, message)
    }
}

/// The outcome of loading several files: the good campaigns and every problem.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Campaigns that validated.
    pub campaigns: Vec<CampaignFile>,
    /// Every problem found, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// How many files were read.
    pub files: usize,
}

/// Parses and validates one campaign from text; `default_id` is used when it has no `id`.
pub fn parse_campaign(
    source: SourceFile,
    default_id: &str,
) -> Result<CampaignFile, Vec<Diagnostic>> {
    let root = match yaml::parse(&source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(
                vec![Diagnostic::at(&source, source.span(0, 0), "the campaign file is empty").hint(
                "a campaign needs at least `trigger`, `from` and `steps`; see docs/campaigns.md",
            )],
            );
        }
        Err(d) => return Err(vec![d]),
    };
    let mut decoder = Decoder::new(&source);
    let campaign = decoder.campaign(&root, default_id);
    match campaign {
        Some(campaign) if decoder.diags.is_empty() => Ok(CampaignFile {
            campaign,
            spans: std::mem::take(&mut decoder.spans),
            source,
        }),
        _ => Err(decoder.diags),
    }
}

impl Campaign {
    /// Reads and validates one campaign file.
    pub fn load(path: &Path) -> Result<Campaign, Vec<Diagnostic>> {
        load_one(path).map(|f| f.campaign)
    }
}

fn load_one(path: &Path) -> Result<CampaignFile, Vec<Diagnostic>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| vec![Diagnostic::file(path, format!("cannot read the file: {e}"))])?;
    if meta.len() > yaml::MAX_FILE_BYTES as u64 {
        return Err(vec![Diagnostic::file(
            path,
            format!(
                "the file is {} bytes; campaign files are limited to {} bytes",
                meta.len(),
                yaml::MAX_FILE_BYTES
            ),
        )]);
    }
    let bytes = std::fs::read(path)
        .map_err(|e| vec![Diagnostic::file(path, format!("cannot read the file: {e}"))])?;
    let text = String::from_utf8(bytes).map_err(|_| {
        vec![Diagnostic::file(path, "the file is not UTF-8 text").hint("save it as UTF-8")]
    })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    parse_campaign(SourceFile::new(path, text), stem)
}

/// The campaign files in a folder (`*.yaml`, `*.yml`), sorted by name; a file path is
/// returned as is.
pub fn campaign_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    if !path.is_dir() {
        if path.exists() {
            return Ok(vec![path.to_path_buf()]);
        }
        return Err(Diagnostic::file(path, "no such file or folder"));
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| Diagnostic::file(path, format!("cannot list the folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every campaign under `paths` (files or folders), reporting every problem and
/// refusing a campaign id used by two files.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut out = Loaded::default();
    let mut files = Vec::new();
    for p in paths {
        match campaign_files(p) {
            Ok(f) => files.extend(f),
            Err(d) => out.diagnostics.push(d),
        }
    }
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    for path in files {
        out.files += 1;
        match load_one(&path) {
            Ok(file) => {
                let id = file.campaign.id.to_string();
                if let Some(first) = ids.get(&id) {
                    out.diagnostics.push(
                        file.diagnostic("id", format!("campaign id `{id}` is already used by {}", first.display()))
                            .hint("campaign ids must be unique; set a different `id:` (or rename the file)"),
                    );
                    continue;
                }
                ids.insert(id, path.clone());
                out.campaigns.push(file);
            }
            Err(mut d) => out.diagnostics.append(&mut d),
        }
    }
    out
}
