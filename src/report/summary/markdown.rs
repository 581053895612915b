//! The Markdown rendering of a [`Summary`] (`summary.md`), with the escaping that keeps any
//! value inside its table cell.

use std::fmt::Write as _;

use super::words::{Block, Fact, Layout, Section, Span, changes_section};
use super::{SIMULATED_NOTICE, Summary};
use crate::report::action::risk_action;

/// The "Run" table of summary.md.
const RUN_ROWS: &Layout = &[
    ("Tool", Fact::Tool),
    ("Started", Fact::Started),
    ("Finished", Fact::Finished),
    ("Runs", Fact::Runs),
    ("Settings", Fact::Settings),
    ("Shards", Fact::Shards),
    ("Results source", Fact::ResultsSource),
    ("Folder", Fact::Folder),
    ("Files", Fact::Files),
];

impl Summary {
    /// The summary as a Markdown document.
    pub fn render_markdown(&self) -> String {
        let mut m = String::new();
        head(&mut m, self);
        if let Some(c) = &self.changes {
            section(&mut m, &changes_section(c));
        }
        actions(&mut m, self);
        decisions(&mut m, self);
        warnings(&mut m, self);
        scores(&mut m, self);
        without_result(&mut m, self);
        let _ = writeln!(m, "## Requests, credits and time\n\n| | |\n|---|---|");
        for (label, value) in self.usage_rows() {
            let _ = writeln!(m, "| {label} | {} |", md(&value));
        }
        let _ = writeln!(m, "\n## Run\n\n| | |\n|---|---|");
        for (label, value) in self.fact_rows(RUN_ROWS) {
            let _ = writeln!(m, "| {label} | {} |", md(&value));
        }
        audit(&mut m, self);
        m
    }
}

/// A section worded in [`super::words`], in Markdown.
fn section(m: &mut String, sec: &Section) {
    let spans = |spans: &[Span]| -> String {
        spans
            .iter()
            .map(|s| match s {
                Span::Text(t) => md(t),
                // No escape works inside a code span: a backtick cannot be in one, a bar or a
                // line break would end the table's cell.
                Span::Code(c) => {
                    let c = c.replace('`', "'").replace('|', "\\|");
                    format!("`{}`", c.replace(['\r', '\n'], " "))
                }
            })
            .collect()
    };
    let _ = writeln!(m, "## {}\n", md(&sec.title));
    for block in &sec.blocks {
        match block {
            Block::Para(p) => {
                let _ = writeln!(m, "{}\n", spans(p));
            }
            Block::Warn(p) => {
                let _ = writeln!(m, "> **{}**\n", spans(p));
            }
            Block::Table { head, rows } => {
                let labels: Vec<String> = head.iter().map(|(l, _)| md(l)).collect();
                let rule: Vec<&str> = head
                    .iter()
                    .map(|(_, n)| if *n { "---:" } else { "---" })
                    .collect();
                let _ = writeln!(m, "| {} |\n|{}|", labels.join(" | "), rule.join("|"));
                for row in rows {
                    let cells: Vec<String> = row.iter().map(|c| spans(c)).collect();
                    let _ = writeln!(m, "| {} |", cells.join(" | "));
                }
                let _ = writeln!(m);
            }
        }
    }
}

/// The audit trail: who ran what, the parameters, the inputs and journal, the balance, and the
/// reconciliation with every term named.
fn audit(m: &mut String, s: &Summary) {
    let Some(a) = &s.audit else { return };
    let table = |m: &mut String, title: &str, rows: Vec<(&'static str, String)>| {
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(m, "\n### {title}\n\n| | |\n|---|---|");
        for (label, value) in rows {
            let _ = writeln!(m, "| {label} | {} |", md(&value));
        }
    };
    let _ = writeln!(m, "\n## Audit trail");
    table(m, "Who ran what", a.identity_rows());
    table(m, "Parameters", a.parameter_rows());
    table(m, "Inputs and journal", a.provenance_rows());
    table(m, "Balance", a.balance_rows());
    let _ = writeln!(m, "\n### Reconciliation\n\n**{}**\n", md(&a.verdict()));
    for e in a.equations() {
        let _ = writeln!(m, "- {}", md(&e));
    }
}

/// Title, simulated stamp, headline, outcome and the warnings list.
fn head(m: &mut String, s: &Summary) {
    let _ = writeln!(m, "# {} summary\n", s.title());
    if s.simulated {
        let _ = writeln!(m, "> **{SIMULATED_NOTICE}**\n");
    }
    let _ = writeln!(m, "**{}**\n", md(&s.headline()));
    let _ = writeln!(m, "{}.\n", md(&s.outcome_line()));
    for f in s.verification_failures() {
        let _ = writeln!(m, "> **VERIFICATION FAILED: {}**\n", md(&f));
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(m, "## Warnings\n");
        for w in &s.warnings {
            let _ = writeln!(m, "- {}", md(w));
        }
        let _ = writeln!(m);
    }
}

fn actions(m: &mut String, s: &Summary) {
    let _ = writeln!(
        m,
        "## What to do\n\n| Action | Images | Meaning |\n|---|---:|---|"
    );
    for (a, n) in s.action_rows() {
        let _ = writeln!(m, "| `{}` | {n} | {} |", a.as_str(), md(a.describe()));
    }
}

fn decisions(m: &mut String, s: &Summary) {
    let _ = writeln!(m, "\n## Decisions\n\n| Decision | Images |\n|---|---:|");
    for (label, n) in s.decision_rows() {
        let _ = writeln!(m, "| {label} | {n} |");
    }
    let _ = writeln!(m);
}

/// Warnings by risk code (with the action each leads to), then by severity.
fn warnings(m: &mut String, s: &Summary) {
    let _ = writeln!(m, "## Warnings by risk code\n");
    let risks = s.risk_codes_by_count();
    if risks.is_empty() {
        let _ = writeln!(m, "None.\n");
    } else {
        let _ = writeln!(m, "| Risk code | Count | Leads to |\n|---|---:|---|");
        for (c, n) in risks {
            let _ = writeln!(m, "| {} | {n} | `{}` |", code(c), risk_action(c).as_str());
        }
        let _ = writeln!(m);
    }
    let levels = s.log_types_by_count();
    if !levels.is_empty() {
        let _ = writeln!(m, "| Severity | Count |\n|---|---:|");
        for (c, n) in levels {
            let _ = writeln!(m, "| {} | {n} |", code(c));
        }
        let _ = writeln!(m);
    }
}

fn scores(m: &mut String, s: &Summary) {
    for h in s.histograms() {
        let _ = writeln!(m, "## {}\n\n| {} | Images |\n|---|---:|", h.title, h.unit);
        for b in h.buckets {
            let _ = writeln!(m, "| {} | {} |", b.range, b.count);
        }
        for (label, n) in &h.rest {
            let _ = writeln!(m, "| {label} | {n} |");
        }
        m.push('\n');
    }
}

fn without_result(m: &mut String, s: &Summary) {
    let _ = writeln!(m, "## Items without a result\n");
    let errors = s.errors_present();
    if errors.is_empty() {
        let _ = writeln!(m, "None.\n");
    } else {
        let _ = writeln!(m, "| Class | Images |\n|---|---:|");
        for (c, n) in errors {
            let _ = writeln!(m, "| `{}` | {n} |", c.as_str());
        }
        let _ = writeln!(m);
    }
}

/// Text made safe inside a Markdown table cell: no line breaks, pipes or HTML.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(ch);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A code (risk, severity) as inline code; unexpected characters are dropped.
fn code(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
        .collect();
    format!("`{clean}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_cells_are_escaped() {
        assert_eq!(md("a|b\nc <x> *y*"), "a\\|b c &lt;x&gt; \\*y\\*");
        assert_eq!(code("LOW|<b>"), "`LOWb`");
    }
}
