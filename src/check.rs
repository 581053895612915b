//! The one-image `check` command: local checks, one submission with retries, a readable result
//! (or the API's JSON) on stdout, and the decision as the exit code.

use std::io::Write;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::CheckArgs;
use crate::didit::{Client, ClientConfig, Outcome, Params, Upload, parse_metadata};
use crate::exit;
use crate::input::preflight::{Prepared, preflight};
use crate::pace::Pacer;
use crate::record::{self, Class, Decision};
use crate::retry::RetryPolicy;
use crate::secret::ApiKey;
use crate::submit::{Final, Submission, Submitter};

/// The line that marks every emulator result.
pub const SIMULATED: &str = "SIMULATED: result from the built-in emulator, not Didit";

/// Failures that are not an answer about the image (those are exit codes, see [`run`]).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot start the built-in emulator: {0}")]
    Emulator(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CheckError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CheckError::Output(_) | CheckError::Internal(_) => exit::SOME_FAILED,
            CheckError::Emulator(_) => exit::USAGE,
        }
    }
}

/// Run `check` with the process's stdout, stderr and `DIDIT_API_KEY` (logging is set up by
/// [`crate::run`]). Returns the exit code:
/// 0 Approved, 1 Declined, 2 usage or bad local file (or a file the API refused), 3 key,
/// permission or endpoint refused, 4 out of credits, 5 other API failure after retries.
pub async fn run(args: CheckArgs) -> Result<i32, CheckError> {
    let env_key = std::env::var("DIDIT_API_KEY").ok();
    run_with(
        args,
        env_key,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await
}

/// [`run`] with the key's environment value and the output streams given (for tests).
pub async fn run_with<O, E>(
    args: CheckArgs,
    env_key: Option<String>,
    out: &mut O,
    err: &mut E,
) -> Result<i32, CheckError>
where
    O: Write + Send,
    E: Write + Send,
{
    // 1. Everything local first: nothing is sent unless all of it is right.
    let params = match params_from(&args) {
        Ok(p) => p,
        Err(msg) => return usage(err, &msg),
    };
    let timeout = match crate::config::request_timeout(args.api.timeout) {
        Ok(t) => t,
        Err(e) => return usage(err, &e.to_string()),
    };
    let path = args.image.clone();
    let prepared = match tokio::task::spawn_blocking(move || preflight(&path)).await {
        Ok(Ok(p)) => p,
        Ok(Err(refusal)) => {
            let shown = args.image.display().to_string();
            let reason = if refusal.reason.contains(&shown) {
                refusal.reason.clone()
            } else {
                format!("{shown}: {}", refusal.reason)
            };
            return usage(err, &format!("{reason}; nothing was sent"));
        }
        Err(e) => return Err(CheckError::Internal(e.to_string())),
    };

    // 2. Where to send it, with which key.
    let emulator = if args.api.emulator {
        Some(start_emulator().await?)
    } else {
        None
    };
    let (base_url, api_key) = match &emulator {
        Some(emu) => (emu.base_url.clone(), emu.key.clone()),
        None => {
            let key = match ApiKey::resolve(args.api.api_key_file.as_deref(), env_key) {
                Ok(k) => k,
                Err(e) => return usage(err, &e.to_string()),
            };
            (args.api.base_url.clone(), key)
        }
    };
    let client = match Client::new(ClientConfig {
        base_url,
        api_key,
        timeout,
    }) {
        Ok(c) => c,
        Err(e) => return usage(err, &e.to_string()),
    };
    if emulator.is_some() {
        if args.json {
            writeln!(err, "{SIMULATED}")?;
        } else {
            writeln!(out, "{SIMULATED}")?;
        }
    }
    tracing::info!(endpoint = client.endpoint(), "sending one request");

    // 3. Submit with retries (429s honour Retry-After; transient errors back off).
    let submitter = Submitter {
        client: Arc::new(client),
        pacer: Arc::new(Pacer::unlimited()),
        policy: RetryPolicy::default_for_api().with_max_retries(args.max_retries),
        budget: None,
        stop: CancellationToken::new(),
        retry_unknown: true,
    };
    let upload = Upload::new(
        prepared.bytes.clone(),
        prepared.format.ext(),
        prepared.format.mime(),
    );
    // Warnings (a capped Retry-After) go to this command's stderr as they happen.
    let sub = {
        let err_lock = std::sync::Mutex::new(&mut *err);
        let warn = |w: &str| {
            if let Ok(mut e) = err_lock.lock() {
                let _ = writeln!(e, "warning: {}", clean(w));
            }
        };
        submitter.submit_warning_to(&upload, &params, &warn).await
    };
    let code = report(&args, &prepared, &params, &sub, out, err);
    if let Some(emu) = emulator {
        emu.stop().await;
    }
    code
}

fn usage<E: Write>(err: &mut E, msg: &str) -> Result<i32, CheckError> {
    writeln!(err, "error: {}", clean(msg))?;
    Ok(exit::USAGE)
}

/// The request fields from the arguments, validated.
fn params_from(args: &CheckArgs) -> Result<Params, String> {
    let metadata = match &args.metadata {
        Some(text) => Some(parse_metadata(text).map_err(|e| format!("--metadata: {e}"))?),
        None => None,
    };
    let params = Params {
        threshold: args.request.threshold,
        rotate_image: args.request.rotate_image,
        save_api_request: args.request.save_api_request,
        vendor_data: args.vendor_data.clone(),
        metadata,
    };
    params.validate().map_err(|e| e.to_string())?;
    Ok(params)
}

/// Print the outcome and choose the exit code.
fn report<O: Write, E: Write>(
    args: &CheckArgs,
    prepared: &Prepared,
    params: &Params,
    sub: &Submission,
    out: &mut O,
    err: &mut E,
) -> Result<i32, CheckError> {
    let tries = match sub.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    if sub.possible_double_charges > 0 {
        writeln!(
            err,
            "note: {} retr{} after the request had reached the API: it may have been billed more than once",
            sub.possible_double_charges,
            if sub.possible_double_charges == 1 {
                "y"
            } else {
                "ies"
            }
        )?;
    }
    match &sub.outcome {
        Final::Done(Outcome::Result { response, raw }) => {
            if args.json {
                let text = serde_json::to_string_pretty(raw)
                    .map_err(|e| CheckError::Internal(e.to_string()))?;
                writeln!(out, "{text}")?;
            } else {
                print_result(args, prepared, params, response, out)?;
            }
            match response.decision() {
                Some(Decision::Approved) => Ok(exit::OK),
                Some(Decision::Declined) => Ok(exit::SOME_FAILED),
                None => {
                    writeln!(
                        err,
                        "error: the API answered 200 without an Approved or Declined status"
                    )?;
                    Ok(exit::API_FAILED)
                }
            }
        }
        Final::Done(o @ Outcome::BadAnswer { raw, .. }) => {
            if args.json {
                let text = serde_json::to_string_pretty(raw)
                    .map_err(|e| CheckError::Internal(e.to_string()))?;
                writeln!(out, "{text}")?;
            }
            writeln!(err, "error: {}", clean(&o.to_string()))?;
            Ok(exit::API_FAILED)
        }
        Final::Done(o @ Outcome::Rejected { .. }) => {
            writeln!(err, "error: {}; nothing was billed", clean(&o.to_string()))?;
            Ok(exit::USAGE)
        }
        Final::Done(Outcome::Fatal { kind, message, .. }) => {
            writeln!(err, "error: {}", kind.explain())?;
            writeln!(err, "  the API said: {}", clean(message))?;
            Ok(kind.exit_code())
        }
        Final::Done(o @ Outcome::RateLimited { .. }) => {
            writeln!(
                err,
                "error: still {} after {tries}: the key's rate limit is used up by other traffic; \
                 try again in a minute or raise --max-retries",
                clean(&o.to_string())
            )?;
            Ok(exit::API_FAILED)
        }
        Final::Done(Outcome::Transient { message, .. }) => {
            writeln!(
                err,
                "error: the API kept failing ({tries}): {}",
                clean(message)
            )?;
            Ok(exit::API_FAILED)
        }
        Final::Unknown { message } => {
            writeln!(err, "error: outcome unknown: {}", clean(message))?;
            Ok(exit::API_FAILED)
        }
        Final::Stopped { .. } => {
            writeln!(err, "interrupted before an answer arrived")?;
            Ok(exit::INTERRUPTED)
        }
        Final::BudgetReached => {
            writeln!(err, "error: the request budget is spent")?;
            Ok(exit::CREDITS)
        }
    }
}

fn print_result<O: Write>(
    args: &CheckArgs,
    prepared: &Prepared,
    params: &Params,
    r: &crate::didit::LivenessResponse,
    out: &mut O,
) -> std::io::Result<()> {
    let na = || "n/a".to_string();
    let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(na);
    let decision = r.decision().map(Decision::as_str).unwrap_or("unknown");
    let threshold = params
        .threshold
        .map(|t| format!("{}, set by --threshold", fmt_num(t)))
        .unwrap_or_else(|| "30, Didit's default".to_string());

    writeln!(
        out,
        "image:          {} ({}, {})",
        clean(&args.image.display().to_string()),
        prepared.format.name(),
        human_size(prepared.size)
    )?;
    writeln!(out, "decision:       {decision}")?;
    writeln!(
        out,
        "score:          {}   (declined at or below {threshold})",
        r.liveness
            .score
            .map(fmt_num)
            .unwrap_or_else(|| "n/a (no score)".to_string())
    )?;
    writeln!(out, "face quality:   {}", num(r.liveness.face_quality))?;
    writeln!(out, "luminance:      {}", num(r.liveness.face_luminance))?;
    let faces = r
        .liveness
        .user_image
        .as_ref()
        .map_or(0, |u| u.entities.len());
    match r.largest_face() {
        Some(f) => {
            let mut text = format!(
                "{}, age {}",
                f.gender
                    .as_deref()
                    .map(clean)
                    .unwrap_or_else(|| "gender n/a".to_string()),
                f.age.map(|a| format!("{:.0}", a)).unwrap_or_else(na)
            );
            if let Some(c) = f.confidence {
                text.push_str(&format!(", detection confidence {}", fmt_num(c)));
            }
            if faces > 1 {
                text.push_str(&format!(" (largest of {faces} faces)"));
            }
            writeln!(out, "face:           {text}")?;
        }
        None => writeln!(out, "face:           none detected")?,
    }
    if r.liveness.warnings.is_empty() {
        writeln!(out, "warnings:       none")?;
    } else {
        writeln!(out, "warnings:")?;
        for w in &r.liveness.warnings {
            let desc = w
                .short_description
                .as_deref()
                .or(w.long_description.as_deref())
                .map(|d| format!(": {}", clean(d)))
                .unwrap_or_default();
            writeln!(out, "  [{}] {}{desc}", clean(&w.log_type), clean(&w.risk))?;
        }
    }
    let risks = r.risks();
    let action = record::action_for(Class::Result, r.decision(), &risks);
    writeln!(
        out,
        "action:         {} ({})",
        action.as_str(),
        action.describe()
    )?;
    if let Some(v) = &r.vendor_data {
        writeln!(out, "vendor_data:    {}", clean(v))?;
    }
    if let Some(m) = &r.metadata {
        writeln!(out, "metadata:       {}", clean(&m.to_string()))?;
    }
    writeln!(
        out,
        "request_id:     {}",
        r.request_id.as_deref().map(clean).unwrap_or_else(na)
    )?;
    if let Some(c) = &r.created_at {
        writeln!(out, "created_at:     {}", clean(c))?;
    }
    writeln!(
        out,
        "saved in Didit: {}",
        if params.save_api_request {
            "yes (save_api_request=true: stored as a session, face enrolled, webhook fired)"
        } else {
            "no (save_api_request=false: one-shot, nothing stored)"
        }
    )?;
    Ok(())
}

/// Numbers as people read them: up to two decimals, no trailing zeros.
fn fmt_num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn human_size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// Text from the API or the file system, made safe for a terminal (no escape sequences).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The in-process emulator a `--emulator` check runs against, with a fresh random key.
struct LocalEmulator {
    emulator: crate::emulator::Emulator,
    base_url: String,
    key: ApiKey,
}

impl LocalEmulator {
    async fn stop(self) {
        self.emulator.shutdown().await;
    }
}

async fn start_emulator() -> Result<LocalEmulator, CheckError> {
    let key_text = format!("emu_{}", uuid::Uuid::new_v4().simple());
    let key = ApiKey::new(key_text.clone()).map_err(|e| CheckError::Emulator(e.to_string()))?;
    let emulator = crate::emulator::start(crate::emulator::EmulatorConfig::new(key_text), 0)
        .await
        .map_err(|e| CheckError::Emulator(e.to_string()))?;
    Ok(LocalEmulator {
        base_url: emulator.base_url(),
        emulator,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(95.0), "95");
        assert_eq!(fmt_num(12.5), "12.5");
        assert_eq!(fmt_num(84.214), "84.21");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(human_size(500), "500 bytes");
        assert_eq!(human_size(2048), "2.0 KB");
        assert_eq!(human_size(6 * 1024 * 1024), "6.0 MB");
    }

    #[test]
    fn terminal_escapes_are_neutralised() {
        assert_eq!(clean("a\x1b[31mred\nb"), "a [31mred b");
    }
}
