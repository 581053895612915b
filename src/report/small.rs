//! The small outputs: the summary in its three forms (summary.json, summary.md, report.html),
//! then SHA256SUMS over them and the results files.

use std::io;
use std::path::Path;

use super::{ReportError, Summary, html, io_err, sums};
use crate::journal;

/// The summary in its three forms: summary.json, summary.md and report.html; then SHA256SUMS
/// over them, the results files (`results`: name and SHA-256 as written) and the other
/// outputs present. Returns report.html's SHA-256, and the name and SHA-256 of every file
/// listed but the results files, SHA256SUMS included (for the checkpoint).
pub(super) fn write_summaries(
    out_dir: &Path,
    summary: &Summary,
    attention: &html::Attention,
    results: &[(String, String)],
    journal_sha256: Option<[u8; 32]>,
) -> Result<(String, Vec<(String, String)>), ReportError> {
    let html = html::render(summary, attention);
    let mut hashed: Vec<(String, String)> = results.to_vec();
    hashed.extend(write_small(out_dir, summary, html.as_bytes())?);
    let listed = sums::write(out_dir, &hashed, journal_sha256)?;
    // Everything SHA256SUMS lists but the results files, and SHA256SUMS itself.
    let written = listed
        .into_iter()
        .filter(|(name, _)| !results.iter().any(|(r, _)| r == name))
        .collect();
    Ok((sums::hex_of(html.as_bytes()), written))
}

/// Write summary.json, summary.md and report.html (`html`); returns their names and SHA-256.
pub(super) fn write_small(
    out_dir: &Path,
    summary: &Summary,
    html: &[u8],
) -> Result<Vec<(String, String)>, ReportError> {
    let mut json = serde_json::to_vec_pretty(summary).map_err(|e| ReportError::Io {
        path: out_dir.join("summary.json"),
        source: io::Error::other(e),
    })?;
    json.push(b'\n');
    let markdown = summary.render_markdown().into_bytes();
    let files: [(&str, &[u8]); 3] = [
        ("summary.json", &json),
        ("summary.md", &markdown),
        ("report.html", html),
    ];
    let mut hashed = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let path = out_dir.join(name);
        journal::write_private_atomic(&path, |w| w.write_all(bytes)).map_err(io_err(&path))?;
        hashed.push((name.to_string(), sums::hex_of(bytes)));
    }
    Ok(hashed)
}
