//! The `check` command: one image (or, for face match, one pair) through local checks, one
//! submission with retries, a readable result (or the API's JSON) on stdout, and the decision
//! as the exit code.

use std::io::Write;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{ApiConfig, CheckConfig};
use crate::didit::{
    Client, ClientConfig, ClientError, Endpoint, FatalKind, Outcome, Params, Upload,
};
use crate::exit::Exit;
use crate::input::preflight::{Prepared, preflight};
use crate::messages::cut;
use crate::pace::Pacer;
use crate::record::{self, Class, Decision};
use crate::secret::ApiKey;
use crate::submit::{Final, Submission, Submitter};

/// The line that marks every emulator result.
pub const SIMULATED: &str = "SIMULATED: result from the built-in emulator, not Didit";

/// Why `check` ended without a decision about the image. The caller prints it; the decision
/// itself (Approved, Declined) is a result, not an error (see [`run`]).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The image cannot be sent (missing, empty, too big, not an image...): nothing was sent.
    #[error("{0}; nothing was sent")]
    BadFile(String),
    /// The client could not be set up for the base URL and key (plain http off loopback...).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The API refused the file (400): nothing was billed.
    #[error("{0}; nothing was billed")]
    Rejected(String),
    /// The API refused the key, the permission, the endpoint, or the payment.
    #[error("{}; the API said: {message}", kind.explain())]
    Fatal { kind: FatalKind, message: String },
    /// Still rate limited after every retry.
    #[error(
        "still {status} after {tries}: the key's rate limit is used up by other traffic; try \
         again in a minute or raise --max-retries"
    )]
    RateLimited { status: String, tries: String },
    /// Transient failures (5xx, timeouts, resets) after every retry.
    #[error("the API kept failing ({tries}): {message}")]
    ApiFailed { tries: String, message: String },
    /// A 200 that gives no decision.
    #[error("{0}")]
    BadAnswer(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot start the built-in emulator: {0}")]
    Emulator(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CheckError {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> Exit {
        match self {
            CheckError::BadFile(_)
            | CheckError::Client(_)
            | CheckError::Rejected(_)
            | CheckError::Emulator(_) => Exit::Usage,
            CheckError::Fatal { kind, .. } => kind.exit_code(),
            CheckError::RateLimited { .. }
            | CheckError::ApiFailed { .. }
            | CheckError::BadAnswer(_) => Exit::ApiFailed,
            CheckError::Output(_) => Exit::Io,
            CheckError::Internal(_) => Exit::Internal,
        }
    }
}

/// Run `check` with the process's stdout and stderr (logging is set up by [`crate::run`]).
/// `Ok` is the decision: [`Exit::Ok`] Approved, [`Exit::SomeFailed`] Declined. Everything else
/// is a [`CheckError`] with its own exit code: a bad local file or a file the API refused
/// (2), key, permission or endpoint refused (3), out of credits (4), other API failure after
/// the retries (5).
pub async fn run(cfg: CheckConfig) -> Result<Exit, CheckError> {
    run_with(cfg, &mut std::io::stdout(), &mut std::io::stderr()).await
}

/// [`run`] with the output streams given (for tests). The result goes to `out`; notes and
/// warnings to `err` as they happen; errors are returned, not printed.
pub async fn run_with<O, E>(cfg: CheckConfig, out: &mut O, err: &mut E) -> Result<Exit, CheckError>
where
    O: Write + Send,
    E: Write + Send,
{
    // 1. The files first: nothing is sent unless they are right (the settings already are).
    let prepared = prepare(&cfg.image).await?;
    let reference = match &cfg.reference {
        Some(path) => Some(prepare(path).await.map_err(|e| match e {
            CheckError::BadFile(why) => {
                CheckError::BadFile(format!("the reference (--ref): {why}"))
            }
            other => other,
        })?),
        None => None,
    };
    if reference
        .as_ref()
        .is_some_and(|r| r.sha256 == prepared.sha256)
    {
        return Err(CheckError::BadFile(
            "the reference (--ref) has the same content as the image: an image matched with \
             itself proves nothing"
                .into(),
        ));
    }

    // 2. Where to send it, with which key.
    let emulator = if cfg.api.emulator {
        Some(start_emulator().await?)
    } else {
        None
    };
    let client = client_for(cfg.call, &cfg.api, emulator.as_ref())?;
    if emulator.is_some() {
        if cfg.json {
            writeln!(err, "{SIMULATED}")?;
        } else {
            writeln!(out, "{SIMULATED}")?;
        }
    }
    tracing::info!(endpoint = client.endpoint(), "sending one request");

    // 3. Submit with retries (429s honour Retry-After; transient errors back off).
    let sub = submit(&cfg, client, &prepared, reference.as_ref(), err).await;
    let result = report(&cfg, &prepared, &sub, out, err);
    if let Some(emu) = emulator {
        emu.stop().await;
    }
    result
}

/// Read and check an image; a refusal names the file once.
async fn prepare(image: &std::path::Path) -> Result<Prepared, CheckError> {
    let path = image.to_path_buf();
    match tokio::task::spawn_blocking(move || preflight(&path)).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(refusal)) => {
            let shown = image.display().to_string();
            let reason = if refusal.reason.contains(&shown) {
                refusal.reason.clone()
            } else {
                format!("{shown}: {}", refusal.reason)
            };
            Err(CheckError::BadFile(cut(&reason)))
        }
        Err(e) => Err(CheckError::Internal(e.to_string())),
    }
}

/// The client of the check for the configured API, or for the built-in emulator with its own
/// key.
fn client_for(
    call: &'static Endpoint,
    api: &ApiConfig,
    emulator: Option<&LocalEmulator>,
) -> Result<Client, CheckError> {
    let (base_url, api_key) = match (emulator, &api.key) {
        (Some(emu), _) => (emu.base_url.clone(), emu.key.clone()),
        (None, Some(key)) => (api.base_url.clone(), key.clone()),
        (None, None) => {
            return Err(CheckError::Internal(
                "no API key in a validated configuration".into(),
            ));
        }
    };
    let config = ClientConfig {
        base_url,
        api_key,
        timeout: api.timeout,
    };
    Ok(Client::for_endpoint(config, call)?)
}

/// One submission with retries; warnings (a capped Retry-After) go to `err` as they happen.
async fn submit<E: Write + Send>(
    cfg: &CheckConfig,
    client: Client,
    prepared: &Prepared,
    reference: Option<&Prepared>,
    err: &mut E,
) -> Submission {
    let submitter = Submitter {
        client: Arc::new(client),
        pacer: Arc::new(Pacer::unlimited()),
        policy: cfg.retry,
        budget: None,
        stop: CancellationToken::new(),
        retry_unknown: true,
    };
    let upload = |p: &Prepared| Upload::new(p.bytes.clone(), p.format.ext(), p.format.mime());
    let params = Params {
        reference: reference.map(upload),
        ..cfg.params.clone()
    };
    let err_lock = std::sync::Mutex::new(err);
    let warn = |w: &str| {
        if let Ok(mut e) = err_lock.lock() {
            let _ = writeln!(e, "warning: {}", cut(w));
        }
    };
    submitter
        .submit_warning_to(&upload(prepared), &params, &warn)
        .await
}

/// Print the result (or the API's JSON) and choose the exit code; anything else is an error.
fn report<O: Write, E: Write>(
    cfg: &CheckConfig,
    prepared: &Prepared,
    sub: &Submission,
    out: &mut O,
    err: &mut E,
) -> Result<Exit, CheckError> {
    let tries = match sub.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    if sub.possible_double_charges > 0 {
        let n = sub.possible_double_charges;
        writeln!(
            err,
            "note: {n} retr{} after the request had reached the API: it may have been billed more than once",
            if n == 1 { "y" } else { "ies" }
        )?;
    }
    // `check` has no budget and no stop, and retries an unknown outcome: every submission
    // ends with an answer, classed by the mapping `scan` uses.
    let (Final::Done(outcome), Some((_, why))) = (&sub.outcome, sub.outcome.ending(sub.attempts))
    else {
        return Err(CheckError::Internal(format!(
            "no answer: {:?}",
            sub.outcome
        )));
    };
    let why = cut(&why.unwrap_or_default());
    match outcome {
        Outcome::Result { response, raw } => {
            if cfg.json {
                print_json(&raw.to_value(), out)?;
            } else {
                print_result(cfg, prepared, response, out)?;
            }
            match response.decision() {
                Some(Decision::Approved) => Ok(Exit::Ok),
                _ => Ok(Exit::SomeFailed),
            }
        }
        Outcome::BadAnswer { raw, .. } => {
            if cfg.json {
                print_json(raw, out)?;
            }
            Err(CheckError::BadAnswer(why))
        }
        o @ Outcome::Rejected { .. } => Err(CheckError::Rejected(cut(&o.to_string()))),
        Outcome::Fatal { kind, .. } => Err(CheckError::Fatal {
            kind: *kind,
            message: why,
        }),
        o @ Outcome::RateLimited { .. } => Err(CheckError::RateLimited {
            status: cut(&o.to_string()),
            tries,
        }),
        Outcome::Transient { message, .. } => Err(CheckError::ApiFailed {
            tries,
            message: cut(message),
        }),
    }
}

fn print_json<O: Write>(raw: &serde_json::Value, out: &mut O) -> Result<(), CheckError> {
    let text =
        serde_json::to_string_pretty(raw).map_err(|e| CheckError::Internal(e.to_string()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

fn print_result<O: Write>(
    cfg: &CheckConfig,
    prepared: &Prepared,
    r: &crate::didit::CheckResponse,
    out: &mut O,
) -> std::io::Result<()> {
    let params = &cfg.params;
    let na = || "n/a".to_string();
    let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(na);
    let decision = r.decision().map(Decision::as_str).unwrap_or("unknown");
    let threshold = match (cfg.call.check, params.threshold) {
        ("face-match", Some(t)) => format!("{}, sent as face match's threshold", fmt_num(t)),
        (_, Some(t)) => format!("{}, set by --threshold", fmt_num(t)),
        (_, None) => "30, Didit's default".to_string(),
    };

    writeln!(
        out,
        "check:          {} ({})",
        cfg.call.check, cfg.call.path
    )?;
    writeln!(
        out,
        "image:          {} ({}, {})",
        cut(&cfg.image.display().to_string()),
        prepared.format.name(),
        human_size(prepared.size)
    )?;
    if let Some(reference) = &cfg.reference {
        writeln!(
            out,
            "reference:      {}",
            cut(&reference.display().to_string())
        )?;
    }
    writeln!(out, "decision:       {decision}")?;
    writeln!(
        out,
        "score:          {}   (declined at or below {threshold})",
        r.verdict
            .score
            .map(fmt_num)
            .unwrap_or_else(|| "n/a (no score)".to_string())
    )?;
    if let Some(min_age) = params.min_age {
        let minimum = match min_age {
            0 => "no minimum: the age check is off".to_string(),
            n => format!("declined below {n}"),
        };
        let age = r.verdict.age_estimation.map_or_else(
            || "n/a (not estimated)".to_string(),
            |a| format!("{a:.1} years, an estimate"),
        );
        writeln!(out, "age:            {age}   ({minimum})")?;
    }
    if cfg.call.check == "liveness" {
        writeln!(out, "face quality:   {}", num(r.verdict.face_quality))?;
        writeln!(out, "luminance:      {}", num(r.verdict.face_luminance))?;
    }
    writeln!(
        out,
        "face:           {}",
        face_line(r.verdict.user_image.as_ref())
    )?;
    if cfg.reference.is_some() {
        writeln!(
            out,
            "reference face: {}",
            face_line(r.verdict.ref_image.as_ref())
        )?;
    }
    print_warnings(r, out)?;
    let risks = r.risks();
    let action = record::action_for(Class::Result, r.decision(), &risks);
    writeln!(
        out,
        "action:         {} ({})",
        action.as_str(),
        action.describe()
    )?;
    if let Some(v) = &r.vendor_data {
        writeln!(out, "vendor_data:    {}", cut(v))?;
    }
    if let Some(m) = &r.metadata {
        writeln!(out, "metadata:       {}", cut(&m.to_string()))?;
    }
    writeln!(
        out,
        "request_id:     {}",
        r.request_id.as_deref().map(cut).unwrap_or_else(na)
    )?;
    if let Some(c) = &r.created_at {
        writeln!(out, "created_at:     {}", cut(c))?;
    }
    writeln!(
        out,
        "saved in Didit: {}",
        match (params.save_api_request, cfg.call.check) {
            (true, "face-match") => {
                "yes (save_api_request=true: stored as a session with both images, webhook fired)"
            }
            (true, _) => {
                "yes (save_api_request=true: stored as a session, face enrolled, webhook fired)"
            }
            (false, _) => "no (save_api_request=false: one-shot, nothing stored)",
        }
    )?;
    Ok(())
}

/// An image's largest face in words: gender, age, detection confidence, how many faces.
fn face_line(image: Option<&crate::didit::UserImage>) -> String {
    let Some(f) = image.and_then(crate::didit::UserImage::largest_face) else {
        return "none detected".to_string();
    };
    let faces = image.map_or(0, |u| u.entities.len());
    let mut text = format!(
        "{}, age {}",
        f.gender
            .as_deref()
            .map(cut)
            .unwrap_or_else(|| "gender n/a".to_string()),
        f.age
            .map(|a| format!("{:.0}", a))
            .unwrap_or_else(|| "n/a".to_string())
    );
    if let Some(c) = f.confidence {
        text.push_str(&format!(", detection confidence {}", fmt_num(c)));
    }
    if faces > 1 {
        text.push_str(&format!(" (largest of {faces} faces)"));
    }
    text
}

fn print_warnings<O: Write>(r: &crate::didit::CheckResponse, out: &mut O) -> std::io::Result<()> {
    if r.verdict.warnings.is_empty() {
        return writeln!(out, "warnings:       none");
    }
    writeln!(out, "warnings:")?;
    for w in &r.verdict.warnings {
        let desc = w
            .short_description
            .as_deref()
            .or(w.long_description.as_deref())
            .map(|d| format!(": {}", cut(d)))
            .unwrap_or_default();
        writeln!(out, "  [{}] {}{desc}", cut(&w.log_type), cut(&w.risk))?;
    }
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
mod tests;
