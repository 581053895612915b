//! `report.html`: one self-contained page (inline CSS, no external assets, every value escaped)
//! for a compliance reader: headline, actions, decisions, warnings, scores, costs, and the
//! items that need attention.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::action::{record_action, risk_action};
use crate::record::{Action, Class, Record};

use super::summary::{
    Block, Fact, Layout, Row, SIMULATED_NOTICE, ScoreMeasure, Section, Span, Summary,
    changes_section, fmt_duration,
};

/// The attention table shows at most this many rows; results.csv has them all.
pub const ATTENTION_CAP: usize = 2000;

/// One row of the "needs attention" table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionRow {
    pub key: String,
    /// Face match: the reference the selfie was compared with (the pair's second key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub action: Action,
    pub class: Class,
    pub status: String,
    pub score: Option<f64>,
    pub risks: String,
    pub error: String,
    pub vendor_data: String,
    pub path: String,
}

/// Collects the items needing attention, most urgent actions first, keeping only the
/// [`ATTENTION_CAP`] rows the table can show, so memory stays bounded (a scan gathers them
/// while it runs).
#[derive(Debug, Default)]
pub struct Attention {
    rows: BTreeMap<Action, Vec<AttentionRow>>,
    total: u64,
}

impl Attention {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consider an item's latest record.
    pub fn offer(&mut self, r: &Record) {
        let action = record_action(r);
        if action == Action::Proceed {
            return;
        }
        self.total += 1;
        // The rows of this action and of the more urgent ones fill the table already: this
        // one would never be shown.
        let ahead: usize = self.rows.range(..=action).map(|(_, rows)| rows.len()).sum();
        if ahead >= ATTENTION_CAP {
            return;
        }
        self.rows.entry(action).or_default().push(AttentionRow {
            key: r.key.clone(),
            reference: r.reference.clone(),
            action,
            class: r.class.unwrap_or(Class::Interrupted),
            status: r.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            score: r.score,
            risks: r.risks().join(", "),
            error: r.error.clone().unwrap_or_default(),
            vendor_data: r.vendor_data.clone().unwrap_or_default(),
            path: r.path.clone(),
        });
        // Rows of less urgent actions pushed past the cap can never be shown again.
        let mut kept = 0;
        for rows in self.rows.values_mut() {
            rows.truncate(ATTENTION_CAP - kept);
            kept += rows.len();
        }
    }

    /// Items needing attention, shown or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The rows to show: fraud first, then retake, review, fix_input, rerun; at most the cap.
    pub fn shown(&self) -> impl Iterator<Item = &AttentionRow> {
        self.rows.values().flatten().take(ATTENTION_CAP)
    }

    /// What the page shows, to be kept and shown again without reading the journal.
    pub fn snapshot(&self) -> AttentionSnapshot {
        AttentionSnapshot {
            total: self.total,
            rows: self.shown().cloned().collect(),
        }
    }

    /// The table a [`Attention::snapshot`] was taken of (as far as the page shows it).
    pub fn from_snapshot(snapshot: AttentionSnapshot) -> Self {
        let mut rows: BTreeMap<Action, Vec<AttentionRow>> = BTreeMap::new();
        for row in snapshot.rows {
            rows.entry(row.action).or_default().push(row);
        }
        Self {
            rows,
            total: snapshot.total,
        }
    }
}

/// The rows the page shows and the number of items needing attention.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AttentionSnapshot {
    pub total: u64,
    pub rows: Vec<AttentionRow>,
}

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root{--ink:#1d2433;--muted:#5b6475;--line:#dfe3ea;--bg:#f6f7f9;--card:#fff;
--fraud:#b42318;--retake:#b54708;--review:#a15c07;--proceed:#067647;--fix_input:#475467;--rerun:#3e4784}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 12px}
.sim{background:#b42318;color:#fff;font-weight:700;text-align:center;padding:12px;font-size:17px;letter-spacing:.02em}
.headline{font-size:20px;font-weight:600;margin:8px 0 4px}
.muted{color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px 18px;margin:16px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
.grid .card{margin:0}
.grid.two{grid-template-columns:repeat(auto-fit,minmax(420px,1fr));margin-top:16px}
.notice{border-left:4px solid var(--retake);background:#fffaeb}
.notice.ok{border-left-color:var(--proceed);background:#f6fef9}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.tag{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.tag.fraud{background:var(--fraud)}.tag.retake{background:var(--retake)}.tag.review{background:var(--review)}
.tag.proceed{background:var(--proceed)}.tag.fix_input{background:var(--fix_input)}.tag.rerun{background:var(--rerun)}
.bars td{border:0;padding:3px 8px}
.bar{height:16px;background:#2e5aac;border-radius:3px;min-width:1px}
.bar.zero{background:transparent}
.items td{font-size:13px}
.items td.wrap{word-break:break-word;max-width:320px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dt{color:var(--muted)}dd{margin:0}
footer{margin-top:24px;font-size:13px}
.fail{border-left:4px solid var(--fraud);background:#fef3f2;color:var(--fraud);font-weight:600}
.eq{margin:0;padding-left:18px}.eq li{margin:4px 0}
#changes td:first-child code{white-space:nowrap}
.audit dd{word-break:break-word}
@page{size:A4;margin:14mm 12mm 16mm;
@bottom-right{content:"Page " counter(page) " of " counter(pages);font:9pt system-ui,sans-serif;color:#5b6475}}
@media print{
body{background:#fff;font-size:10.5pt}
main{max-width:none;padding:0}
.card{border-color:#c8ccd4;margin:10px 0;break-inside:avoid;page-break-inside:avoid}
.card.flow{break-inside:auto;page-break-inside:auto}
.grid,.grid.two{display:block;margin:0}
.grid .card{margin:0 0 10px}
h1,h2,h3{break-after:avoid;page-break-after:avoid}
table{break-inside:auto}
thead{display:table-header-group}
tr,dt,dd,li{break-inside:avoid;page-break-inside:avoid}
.items td.wrap{max-width:none}
code{word-break:break-all}
.sim,.tag,.bar,.fail,.notice{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"#;

fn tag(a: Action) -> String {
    format!("<span class=\"tag {0}\">{0}</span>", a.as_str())
}

fn num(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// The run details of the page's "Run" card (the settings rows only when a run was recorded).
const RUN_ROWS: &Layout = &[
    ("Results from", Fact::ResultsSource),
    ("API host", Fact::ApiHost),
    ("Threshold", Fact::Threshold),
    ("rotate_image", Fact::RotateImage),
    ("save_api_request", Fact::SaveApiRequest),
    ("Outcome", Fact::Outcome),
    ("Started", Fact::Started),
    ("Finished", Fact::Finished),
    ("Runs", Fact::RunCount),
    ("Shards", Fact::Shards),
    ("Tool", Fact::Tool),
    ("Folder", Fact::Folder),
];

/// The whole page.
pub fn render(s: &Summary, attention: &Attention) -> String {
    let mut h = String::with_capacity(64 * 1024);
    head(&mut h, s);
    if let Some(c) = &s.changes {
        section(&mut h, &changes_section(c));
    }
    actions(&mut h, s);
    h.push_str("<div class=\"grid\">");
    decisions(&mut h, s);
    warnings(&mut h, s);
    scores(&mut h, s);
    h.push_str("</div>\n<div class=\"grid two\">");
    h.push_str("<div class=\"card\"><h2>Requests, credits and time</h2>");
    details(&mut h, &usage_rows(s));
    h.push_str("</div>");
    h.push_str("<div class=\"card\"><h2>Run</h2>");
    details(&mut h, &s.fact_rows(RUN_ROWS));
    h.push_str("</div></div>\n");
    audit(&mut h, s);
    // Face match lists each item as its pair: the selfie's key and the reference's.
    let pairs = s.scores.measure == ScoreMeasure::FaceMatchSimilarity
        || attention.shown().any(|r| r.reference.is_some());
    attention_table(&mut h, attention, &s.results_files(), pairs);
    footer(&mut h, s);
    h
}

/// Document head, simulated banner, title, headline, times, and the outcome card with the
/// warnings.
fn head(h: &mut String, s: &Summary) {
    let title = if s.simulated {
        format!("SIMULATED {} report", s.title().to_lowercase())
    } else {
        format!("{} report", s.title())
    };
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{CSS}</style></head><body>\n"
    );
    if s.simulated {
        let _ = writeln!(
            h,
            "<div class=\"sim\" role=\"alert\">{}</div>",
            esc(SIMULATED_NOTICE)
        );
    }
    let _ = writeln!(h, "<main>\n<h1>{title}</h1>");
    let _ = writeln!(h, "<p class=\"headline\">{}</p>", esc(&s.headline()));
    let _ = writeln!(
        h,
        "<p class=\"muted\">{} · {} → {}</p>",
        esc(&s.fact(Fact::Tool).unwrap_or_default()),
        esc(s.started_at.as_deref().unwrap_or("unknown start")),
        esc(s.finished_at.as_deref().unwrap_or("not finished")),
    );
    for f in s.verification_failures() {
        let _ = writeln!(
            h,
            "<div class=\"card fail\" role=\"alert\">VERIFICATION FAILED: {}</div>",
            esc(&f)
        );
    }
    let ok = s.outcome == "completed" && s.warnings.is_empty();
    let _ = write!(
        h,
        "<div class=\"card notice{}\"><strong>{}.</strong>",
        if ok { " ok" } else { "" },
        esc(&s.outcome_line())
    );
    if !s.warnings.is_empty() {
        h.push_str("<ul>");
        for w in &s.warnings {
            let _ = write!(h, "<li>{}</li>", esc(w));
        }
        h.push_str("</ul>");
    }
    h.push_str("</div>\n");
}

fn actions(h: &mut String, s: &Summary) {
    h.push_str("<div class=\"card\"><h2>What to do with each image</h2><table><tr><th>Action</th><th class=\"n\">Images</th><th>Meaning</th></tr>");
    for (a, n) in s.action_rows() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{n}</td><td>{}</td></tr>",
            tag(a),
            esc(a.describe())
        );
    }
    h.push_str("</table></div>\n");
}

/// Decisions with their total, then the classes of the items without a result.
fn decisions(h: &mut String, s: &Summary) {
    h.push_str("<div class=\"card\"><h2>Decisions</h2><table><tr><th>Decision</th><th class=\"n\">Images</th></tr>");
    for (label, n) in s.decision_rows() {
        let _ = write!(h, "<tr><td>{label}</td><td class=\"n\">{n}</td></tr>");
    }
    let _ = write!(
        h,
        "<tr><td><strong>Total</strong></td><td class=\"n\"><strong>{}</strong></td></tr></table>",
        s.items.total
    );
    let errors = s.errors_present();
    if !errors.is_empty() {
        h.push_str("<h2 style=\"margin-top:16px\">Without a result</h2><table><tr><th>Class</th><th class=\"n\">Images</th></tr>");
        for (c, n) in errors {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td class=\"n\">{n}</td></tr>",
                c.as_str()
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</div>");
}

/// Warnings by risk code (with the action each leads to), then by severity.
fn warnings(h: &mut String, s: &Summary) {
    h.push_str("<div class=\"card\"><h2>Warnings</h2>");
    let risks = s.risk_codes_by_count();
    if risks.is_empty() {
        h.push_str("<p class=\"muted\">No warnings.</p>");
    } else {
        h.push_str("<table><tr><th>Risk code</th><th class=\"n\">Count</th><th>Leads to</th></tr>");
        for (c, n) in risks {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td class=\"n\">{n}</td><td>{}</td></tr>",
                esc(c),
                tag(risk_action(c))
            );
        }
        h.push_str("</table>");
        h.push_str("<h2 style=\"margin-top:16px\">Severity</h2><table><tr><th>log_type</th><th class=\"n\">Count</th></tr>");
        for (c, n) in s.log_types_by_count() {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td class=\"n\">{n}</td></tr>",
                esc(c)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</div>");
}

/// The histograms (scores, and ages when estimated): one bar per bucket, scaled to the largest.
fn scores(h: &mut String, s: &Summary) {
    for hist in s.histograms() {
        histogram(h, &hist);
    }
}

fn histogram(h: &mut String, hist: &crate::report::summary::Histogram) {
    let max = hist
        .buckets
        .iter()
        .map(|b| b.count)
        .chain(hist.rest.iter().map(|(_, n)| *n))
        .max()
        .unwrap_or(0)
        .max(1);
    h.push_str(&format!(
        "<div class=\"card\"><h2>{}</h2><table class=\"bars\">",
        esc(&hist.title)
    ));
    let bar = |label: &str, n: u64| {
        let pct = n as f64 * 100.0 / max as f64;
        format!(
            "<tr><td class=\"n\">{}</td><td style=\"width:100%\"><div class=\"bar{}\" style=\"width:{pct:.1}%\"></div></td><td class=\"n\">{n}</td></tr>",
            esc(label),
            if n == 0 { " zero" } else { "" }
        )
    };
    for b in hist.buckets {
        h.push_str(&bar(&b.range, b.count));
    }
    for (label, n) in &hist.rest {
        h.push_str(&bar(label, *n));
    }
    h.push_str("</table></div>");
}

/// Requests, credits, time and inputs, figure by figure.
fn usage_rows(s: &Summary) -> Vec<Row> {
    let c = &s.credits;
    let r = &s.requests;
    let mut rows: Vec<Row> = vec![
        ("Credits used", c.used.to_string()),
        (
            "Estimated cost",
            format!(
                "US${:.2} at US${:.2} per call",
                c.estimated_cost_usd, c.price_per_call_usd
            ),
        ),
        (
            "Saved by deduplication",
            c.saved_by_deduplication.to_string(),
        ),
        ("Requests sent", r.sent.to_string()),
        ("Retries", r.retries.to_string()),
        ("Rate-limited (429)", r.rate_limited_429.to_string()),
        (
            "Sends with an unknown outcome",
            r.unknown_outcomes.to_string(),
        ),
        (
            "Possible double charges (of those, sent again)",
            r.possible_double_charges.to_string(),
        ),
        (
            "No longer in the sources (gone.csv)",
            s.items.gone.to_string(),
        ),
        ("Wall time", fmt_duration(s.wall_secs)),
        (
            "Achieved rate",
            s.achieved_rate_per_min.map_or_else(
                || "unknown".to_string(),
                |x| format!("{x:.1} requests/min (last run)"),
            ),
        ),
    ];
    match &s.inputs {
        Some(i) => rows.extend([
            ("Inputs found", i.inputs.to_string()),
            ("Ignored (not images)", i.ignored.to_string()),
            ("Already done earlier", i.skipped_done.to_string()),
            ("Deduplicated", i.deduplicated.to_string()),
            ("Not processed", i.not_processed.to_string()),
        ]),
        None => rows.push(("Inputs", s.inputs_line())),
    }
    rows
}

/// A section worded in [`super::summary::words`], in HTML: a card of paragraphs and tables.
fn section(h: &mut String, sec: &Section) {
    let spans = |spans: &[Span]| -> String {
        spans
            .iter()
            .map(|s| match s {
                Span::Text(t) => esc(t),
                Span::Code(c) => format!("<code>{}</code>", esc(c)),
            })
            .collect()
    };
    let _ = write!(
        h,
        "<div class=\"card flow\" id=\"{}\"><h2>{}</h2>",
        sec.id,
        esc(&sec.title)
    );
    for block in &sec.blocks {
        match block {
            Block::Para(p) => {
                let _ = write!(h, "<p class=\"muted\">{}</p>", spans(p));
            }
            Block::Warn(p) => {
                let _ = write!(h, "<p class=\"fail\">{}</p>", spans(p));
            }
            Block::Table { head, rows } => {
                let td = |numeric: bool| if numeric { "<td class=\"n\">" } else { "<td>" };
                h.push_str("<table><thead><tr>");
                for (label, numeric) in head {
                    let class = if *numeric { " class=\"n\"" } else { "" };
                    let _ = write!(h, "<th{class}>{}</th>", esc(label));
                }
                h.push_str("</tr></thead><tbody>");
                for row in rows {
                    h.push_str("<tr>");
                    for (cell, (_, numeric)) in row.iter().zip(head) {
                        let _ = write!(h, "{}{}</td>", td(*numeric), spans(cell));
                    }
                    h.push_str("</tr>");
                }
                h.push_str("</tbody></table>");
            }
        }
    }
    h.push_str("</div>\n");
}

/// The audit trail: the reconciliation (red when it does not close), who ran what, the
/// parameters, the inputs and journal, and the balance.
fn audit(h: &mut String, s: &Summary) {
    let Some(a) = &s.audit else { return };
    let closes = a.reconciliation.closes;
    let _ = write!(
        h,
        "<div class=\"card{}\" id=\"reconciliation\"><h2>Reconciliation</h2><p{}>{}</p><ul class=\"eq\">",
        if closes { "" } else { " fail" },
        if closes { "" } else { " class=\"fail\"" },
        esc(&a.verdict())
    );
    for e in a.equations() {
        let _ = write!(h, "<li>{}</li>", esc(&e));
    }
    h.push_str("</ul></div>\n<div class=\"grid two audit\">");
    for (title, rows) in [
        ("Who ran what", a.identity_rows()),
        ("Parameters", a.parameter_rows()),
        ("Inputs and journal", a.provenance_rows()),
        ("Balance", a.balance_rows()),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = write!(h, "<div class=\"card\"><h2>{}</h2>", esc(title));
        let rows: Vec<Row> = rows;
        details(h, &rows);
        h.push_str("</div>");
    }
    h.push_str("</div>\n");
}

/// (label, value) rows as a definition list.
fn details(h: &mut String, rows: &[Row]) {
    h.push_str("<dl>");
    for (k, v) in rows {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    h.push_str("</dl>");
}

/// The items needing attention, most urgent first, capped with a pointer to results.csv.
/// With `pairs` (face match), each item's two keys, the selfie's and the reference's, and the
/// similarity as its score.
fn attention_table(h: &mut String, attention: &Attention, results: &[&str], pairs: bool) {
    let _ = write!(
        h,
        "<div class=\"card flow\"><h2>Items needing attention ({})</h2>",
        attention.total()
    );
    if attention.total() == 0 {
        h.push_str("<p class=\"muted\">None: every image can proceed.</p>");
    } else {
        let (keys, score) = if pairs {
            ("<th>Selfie key</th><th>Reference</th>", "Similarity")
        } else {
            ("<th>Key</th>", "Score")
        };
        let _ = write!(
            h,
            "<table class=\"items\"><thead><tr><th>Action</th>{keys}<th>Decision</th>\
             <th class=\"n\">{score}</th><th>Warnings / error</th><th>vendor_data</th><th>Path</th>\
             </tr></thead><tbody>",
        );
        let mut shown = 0u64;
        for row in attention.shown() {
            shown += 1;
            attention_row(h, row, pairs);
        }
        h.push_str("</tbody></table>");
        if shown < attention.total() {
            let _ = write!(
                h,
                "<p class=\"muted\">Showing the first {shown} of {} (most urgent actions first). \
                 Every item is in {}.</p>",
                attention.total(),
                results
                    .iter()
                    .map(|f| format!("<code>{f}</code>"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
        }
    }
    h.push_str("</div>\n");
}

fn attention_row(h: &mut String, row: &AttentionRow, pairs: bool) {
    let detail = match (row.risks.is_empty(), row.error.is_empty()) {
        (false, true) => row.risks.clone(),
        (true, false) => row.error.clone(),
        (false, false) => format!("{}; {}", row.risks, row.error),
        (true, true) => row.class.as_str().to_string(),
    };
    let decision = if row.status.is_empty() {
        row.class.as_str().to_string()
    } else {
        row.status.clone()
    };
    let reference = if pairs {
        match &row.reference {
            Some(r) => format!("<td class=\"wrap\"><code>{}</code></td>", esc(r)),
            // None found (the item is a fix_input saying why).
            None => "<td class=\"muted\">—</td>".to_string(),
        }
    } else {
        String::new()
    };
    let _ = write!(
        h,
        "<tr><td>{}</td><td class=\"wrap\"><code>{}</code></td>{reference}<td>{}</td>\
         <td class=\"n\">{}</td><td class=\"wrap\">{}</td><td class=\"wrap\">{}</td>\
         <td class=\"wrap\">{}</td></tr>",
        tag(row.action),
        esc(&row.key),
        esc(&decision),
        num(row.score),
        esc(&detail),
        esc(&row.vendor_data),
        esc(&row.path),
    );
}

fn footer(h: &mut String, s: &Summary) {
    let _ = write!(
        h,
        "<footer class=\"muted\">Files in {}: <code>journal.jsonl</code> (the source of truth), {}. \
         Rebuild them at any time with <code>liveness-batch report DIR</code>.</footer>\n</main></body></html>\n",
        esc(&s.out_dir),
        s.files_written()
            .iter()
            .map(|f| format!("<code>{f}</code>"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{RunEnd, RunInfo, Settings};
    use crate::record::{Decision, WarningRecord};
    use crate::report::summary::Accumulator;

    fn record(key: &str, class: Class, risk: Option<&str>) -> Record {
        Record {
            key: key.into(),
            path: format!("{key}.jpg"),
            class: Some(class),
            status: (class == Class::Result).then_some(Decision::Declined),
            warnings: risk
                .map(|r| {
                    vec![WarningRecord {
                        risk: r.into(),
                        log_type: "error".into(),
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        }
        .with_action()
    }

    #[test]
    fn escapes_everything() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    /// The rows kept are exactly those a table of every row would show first, whatever the
    /// order the actions come in, and no more are held.
    #[test]
    fn attention_keeps_only_the_rows_it_can_show() {
        let classes = [
            (Class::Result, Some("LIVENESS_FACE_ATTACK")),
            (Class::Result, Some("NO_FACE_DETECTED")),
            (Class::Result, Some("LOW_LIVENESS_SCORE")),
            (Class::InvalidInput, None),
            (Class::Transient, None),
            (Class::Result, None),
        ];
        let mut seed = 7u64;
        for round in 0..4 {
            let mut a = Attention::new();
            let mut all: Vec<AttentionRow> = Vec::new();
            let mut offered = 0u64;
            for i in 0..3 * ATTENTION_CAP + round * 500 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Rounds lean on later (less urgent) or earlier actions in turn.
                let pick = ((seed >> 33) as usize + round * i / 1000) % classes.len();
                let (class, risk) = classes[pick];
                let r = record(&format!("k{i}"), class, risk);
                if record_action(&r) != Action::Proceed {
                    offered += 1;
                    let mut one = Attention::new();
                    one.offer(&r);
                    all.extend(one.shown().cloned());
                }
                a.offer(&r);
                let held: usize = a.rows.values().map(Vec::len).sum();
                assert!(held <= ATTENTION_CAP, "{held} rows held");
            }
            all.sort_by_key(|row| row.action);
            let expected: Vec<&AttentionRow> = all.iter().take(ATTENTION_CAP).collect();
            let shown: Vec<&AttentionRow> = a.shown().collect();
            assert_eq!(shown, expected, "round {round}");
            assert_eq!(a.total(), offered);
        }
    }

    #[test]
    fn attention_is_capped_and_urgent_first() {
        let mut a = Attention::new();
        for i in 0..ATTENTION_CAP + 10 {
            a.offer(&record(&format!("r{i}"), Class::Transient, None));
        }
        a.offer(&record("f", Class::Result, Some("LIVENESS_FACE_ATTACK")));
        a.offer(&Record {
            key: "ok".into(),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            ..Default::default()
        });
        assert_eq!(a.total(), ATTENTION_CAP as u64 + 11);
        let shown: Vec<_> = a.shown().collect();
        assert_eq!(shown.len(), ATTENTION_CAP);
        assert_eq!(shown[0].key, "f", "fraud first");
        assert!(shown.iter().all(|r| r.key != "ok"));
    }

    #[test]
    fn capped_table_points_to_results_csv() {
        let mut acc = Accumulator::new();
        let mut att = Attention::new();
        for i in 0..ATTENTION_CAP + 1 {
            let r = record(&format!("k{i}"), Class::InvalidInput, None);
            acc.on_record(&r, true);
            att.offer(&r);
        }
        let page = render(&acc.finish(Some(0.1), "/o"), &att);
        assert!(page.contains(&format!("Items needing attention ({})", ATTENTION_CAP + 1)));
        assert!(page.contains(&format!(
            "Showing the first {ATTENTION_CAP} of {}",
            ATTENTION_CAP + 1
        )));
        assert!(page.contains("<code>results.csv</code>"));
        assert!(!page.contains(&format!("<code>k{ATTENTION_CAP}</code>")));
        assert!(!page.contains("class=\"sim\""), "not simulated");
    }

    #[test]
    fn page_is_self_contained_escaped_and_stamped() {
        let mut acc = Accumulator::new();
        acc.on_run(&RunInfo {
            tool_version: "0.1.0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            settings: Settings {
                threshold: Some(50.0),
                rotate_image: false,
                save_api_request: false,
                api_host: "127.0.0.1:9".into(),
                simulated: true,
                ..Settings::default()
            },
            sources: vec![],
            rate: "240/min".into(),
            concurrency: 8,
            resumed: false,
            dedupe: true,
            max_requests: None,
            ..Default::default()
        });
        let mut evil = record("<img src=x onerror=alert(1)>", Class::Rejected, None);
        evil.error = Some("</td><script>alert(1)</script>".into());
        evil.vendor_data = Some("=HYPERLINK(\"http://x\")".into());
        let mut att = Attention::new();
        for r in [
            &evil,
            &record("b", Class::Result, Some("LOW_LIVENESS_SCORE")),
        ] {
            acc.on_record(r, true);
            att.offer(r);
        }
        acc.on_end(&RunEnd {
            outcome: crate::journal::RunOutcome::Completed,
            ..Default::default()
        });
        let s = acc.finish(Some(0.1), "/tmp/<out>");
        let page = render(&s, &att);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains(&format!(
            "<div class=\"sim\" role=\"alert\">{SIMULATED_NOTICE}</div>"
        )));
        assert!(
            !page.contains("<script"),
            "no script at all, escaped values included"
        );
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("=HYPERLINK(&quot;http://x&quot;)"));
        assert!(page.contains("/tmp/&lt;out&gt;"));
        assert!(
            !page.contains("src=\"") && !page.contains("href"),
            "no external assets"
        );
        assert!(!page.contains("<link") && !page.contains("url("));
        assert!(page.contains("Items needing attention (2)"));
        for a in Action::ALL {
            assert!(page.contains(&esc(a.describe())), "{a:?}");
        }
        assert!(page.contains("<code>LOW_LIVENESS_SCORE</code>"));
    }

    #[test]
    fn a_pairs_attention_row_shows_both_keys_escaped_and_its_similarity() {
        let mut acc = Accumulator::new();
        let mut run = crate::journal::fixtures::run_info(false, false);
        run.settings.check = Some("face-match".into());
        run.settings.threshold = Some(30.0);
        acc.on_run(&run);
        let mut low = record(
            "<b>u1</b>",
            Class::Result,
            Some("LOW_FACE_MATCH_SIMILARITY"),
        );
        low.reference = Some("refs/<script>u1.jpg".into());
        low.score = Some(12.5);
        let mut att = Attention::new();
        acc.on_record(&low, true);
        att.offer(&low);
        let snapshot = att.snapshot();
        assert_eq!(
            snapshot.rows[0].reference.as_deref(),
            Some("refs/<script>u1.jpg")
        );
        // The checkpoint keeps the rows: the page drawn again shows the same.
        let again = Attention::from_snapshot(
            serde_json::from_value(serde_json::to_value(&snapshot).unwrap()).unwrap(),
        );
        let s = acc.finish(None, "/o");
        let page = render(&s, &att);
        assert_eq!(page, render(&s, &again));
        assert!(!page.contains("<script"));
        assert!(page.contains(
            "<th>Action</th><th>Selfie key</th><th>Reference</th><th>Decision</th>\
             <th class=\"n\">Similarity</th>"
        ));
        assert!(page.contains(
            "<code>&lt;b&gt;u1&lt;/b&gt;</code></td><td class=\"wrap\">\
             <code>refs/&lt;script&gt;u1.jpg</code></td><td>Declined</td><td class=\"n\">12.5</td>"
        ));
        // A liveness page keeps its one key and its score.
        let mut acc = Accumulator::new();
        acc.on_run(&crate::journal::fixtures::run_info(false, false));
        let plain = record("k", Class::Result, Some("LOW_LIVENESS_SCORE"));
        let mut att = Attention::new();
        acc.on_record(&plain, true);
        att.offer(&plain);
        let page = render(&acc.finish(None, "/o"), &att);
        assert!(
            page.contains("<th>Action</th><th>Key</th><th>Decision</th><th class=\"n\">Score</th>")
        );
        assert!(!page.contains("Selfie key"));
    }
}
