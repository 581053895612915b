//! `--dry-run`: read and check every item (only stat those an earlier run finished at the same
//! version), ask the dispatch state machine what a run would do with it, and print the counts,
//! time and cost. Nothing is sent and nothing is written.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;

use super::dispatch::Decision;
use super::source::{self, Checked, Ev};
use super::{ScanError, Stop};
use crate::audit::{Balance, Coverage, coverage};
use crate::config::ScanConfig;
use crate::didit::{Client, ClientConfig};
use crate::exit::Exit;
use crate::input;
use crate::journal::{self, Index};
use crate::{messages, progress};

/// What a run would do, by decision.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    pub items: u64,
    pub ignored: u64,
    /// Of the ignored, those left out by `--include` / `--exclude`.
    pub filtered: u64,
    pub done: u64,
    pub refused: u64,
    pub reasons: BTreeMap<String, u64>,
    pub reused: u64,
    pub send: u64,
}

pub async fn run(cfg: &ScanConfig, plan: input::Plan, stop: &Stop) -> Result<Exit, ScanError> {
    // A dry run over a folder it would resume counts from what the journal holds: only once
    // the journal and its caches pass the checks a real run makes.
    super::open::verify_for_dry_run(cfg)?;
    let journal_path = cfg.out.join(journal::JOURNAL_FILE);
    let index = if journal_path.exists() && !cfg.fresh {
        journal::load_index(&journal_path)?.0
    } else {
        Index::default()
    };
    let (mut machine, quick) = source::gate(cfg, index);
    let index = quick.index.clone();
    let mut events = source::preflighted(cfg, plan, stop.clone(), quick);
    let mut est = Estimate::default();
    let mut incomplete = None;
    loop {
        let ev = tokio::select! {
            biased;
            _ = stop.token().cancelled() => break,
            ev = events.next() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        match ev {
            Ev::Ignored { reason, .. } => {
                est.ignored += 1;
                if reason.starts_with("excluded by --exclude")
                    || reason.starts_with("not matched by --include")
                {
                    est.filtered += 1;
                }
            }
            Ev::Warning(w) => messages::warn(&w),
            Ev::Incomplete(i) => {
                messages::warn(&i.warning());
                incomplete.get_or_insert(i);
            }
            Ev::Ready(ready) => {
                est.items += 1;
                let facts = ready.facts();
                let decision = machine.admit((), facts);
                // Counts resting on a lookup that could not read the index would be wrong.
                index.readable(&cfg.out)?;
                match decision {
                    Decision::Skip(()) => est.done += 1,
                    Decision::Refuse(()) => {
                        est.refused += 1;
                        let reason = match (&ready.item.problem, &ready.checked) {
                            (Some(p), _) => p.clone(),
                            (None, Checked::Read(Err(r))) => r.reason.clone(),
                            (None, _) => "refused".into(),
                        };
                        // A short category ("over 5 MB", "not an image: PDF", ...), for counts.
                        *est.reasons
                            .entry(crate::audit::category(&reason))
                            .or_default() += 1;
                    }
                    Decision::Follow((), _) | Decision::Wait => est.reused += 1,
                    Decision::Lead(()) => {
                        est.send += 1;
                        // A dry run assumes the leader gets an answer the others can reuse.
                        if let Some(c) = facts.content {
                            machine.complete(c, Some(0), false);
                        }
                    }
                }
            }
        }
    }
    let balance = balance(cfg).await;
    print!("{}", render(cfg, &est, stop.cause().is_some(), &balance));
    if let Some(i) = &incomplete {
        println!(
            "INCOMPLETE: the counts cover only what was listed before {} stopped.",
            i.source
        );
    }
    Ok(match stop.cause() {
        Some(c) => c.exit_code(),
        None if incomplete.is_some() => Exit::Incomplete,
        None => Exit::Ok,
    })
}

/// The account balance, read with the key when there is one (a read, nothing is sent).
async fn balance(cfg: &ScanConfig) -> Balance {
    let at = super::now_rfc3339();
    if cfg.api.emulator {
        return Balance::unknown(at, "a dry run does not start the built-in emulator");
    }
    let Some(key) = cfg.api.key.clone() else {
        return Balance::unknown(at, "no API key given");
    };
    match Client::new(ClientConfig {
        base_url: cfg.api.base_url.clone(),
        api_key: key,
        timeout: cfg.api.timeout,
    }) {
        Ok(client) => client.balance().await,
        Err(e) => Balance::unknown(at, e.to_string()),
    }
}

fn render(cfg: &ScanConfig, est: &Estimate, interrupted: bool, balance: &Balance) -> String {
    let secs = if est.send == 0 {
        0.0
    } else {
        (est.send - 1) as f64 / cfg.rate.per_second() * (1.0 + crate::pace::SAFETY_MARGIN)
    };
    let mut out = String::new();
    out.push_str("DRY RUN: nothing was sent and nothing was written.\n");
    if interrupted {
        out.push_str("INTERRUPTED: the counts cover only the items checked so far.\n");
    }
    if let Some(plan) = &cfg.shard {
        out.push_str(&format!("{}.\n", plan.describe()));
    }
    if let Some(note) = super::open::check_note(cfg) {
        out.push_str(&format!("{note}.\n"));
    }
    let found = if cfg.call.images.len() == 2 {
        "pairs found"
    } else {
        "images found"
    };
    out.push_str(&format!("  {found:<22}{}\n", est.items));
    if !cfg.source_options.filters.is_empty() {
        out.push_str(&format!("  left out by patterns  {}\n", est.filtered));
    }
    if est.ignored > est.filtered {
        out.push_str(&format!(
            "  other files ignored   {}\n",
            est.ignored - est.filtered
        ));
    }
    out.push_str(&format!("  already done (skip)   {}\n", est.done));
    out.push_str(&format!("  refused locally       {}\n", est.refused));
    for (reason, n) in &est.reasons {
        out.push_str(&format!("      {n:>6}  {reason}\n"));
    }
    if cfg.dedupe {
        out.push_str(&format!("  identical (reused)    {}\n", est.reused));
    }
    out.push_str(&format!("  would send            {}\n", est.send));
    out.push_str(&format!(
        "  {:<22}about {}\n",
        format!("time at {}", cfg.rate),
        progress::human_duration(Duration::from_secs_f64(secs))
    ));
    out.push_str(&format!(
        "  estimated cost        US${:.2} ({} calls at US${:.2})\n",
        est.send as f64 * cfg.price_per_call,
        est.send,
        cfg.price_per_call
    ));
    if let Some(max) = cfg.max_requests {
        out.push_str(&format!(
            "  --max-requests        {max} (the run stops there, resumable)\n"
        ));
    }
    let calls = cfg.max_requests.map_or(est.send, |m| est.send.min(m));
    let estimate = calls as f64 * cfg.price_per_call;
    out.push_str(&format!("  balance               {}\n", balance.describe()));
    let verdict = match coverage(balance, estimate, calls) {
        Coverage::Covers => "yes: the balance covers the estimated cost".to_string(),
        Coverage::Short => format!(
            "NO: the balance does not cover the estimated cost; cap the calls with \
             --max-requests {}",
            crate::audit::calls_covered(balance, cfg.price_per_call).unwrap_or(0)
        ),
        Coverage::Unknown => "unknown (the balance could not be read)".to_string(),
    };
    out.push_str(&format!("  balance sufficient    {verdict}\n"));
    out
}
