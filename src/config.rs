//! Validated settings for `scan`, built from the command line and the environment. Everything
//! a user can get wrong is caught here, before anything is read, sent or written.

use crate::emulator::{EmulatorConfig, EmulatorError, Faults};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{ApiArgs, ScanArgs};
use crate::didit::{self, Endpoint, Params};
use crate::input::SourceOptions;
use crate::pace::{Rate, RateError};
use crate::report::ResultsFormat;
use crate::retry::RetryPolicy;
use crate::secret::{ApiKey, KeyError};

/// Most requests a user may keep in flight; more would only queue inside the pacer.
pub const MAX_CONCURRENCY: usize = 256;
/// Most retries per item.
pub const MAX_RETRIES: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Rate(#[from] RateError),
    #[error(transparent)]
    Filter(#[from] crate::input::filter::FilterError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("--concurrency must be between 1 and {MAX_CONCURRENCY}, got {0}")]
    Concurrency(usize),
    #[error("--max-retries must be at most {MAX_RETRIES}, got {0}")]
    Retries(u32),
    #[error("--timeout must be a positive number of seconds (at most 3600), got {0}")]
    Timeout(f64),
    #[error("--threshold must be a number from 0 to 100, got {0}")]
    Threshold(f64),
    #[error("--face-match-threshold must be a number from 0 to 100, got {0}")]
    FaceMatchThreshold(f64),
    #[error(
        "--min-age must be a whole number of years from 0 to 100 (0 turns the age check off), got {0}"
    )]
    MinAge(i64),
    #[error("{flag} is for --check {needs}; this is --check {check}")]
    NotForCheck {
        flag: &'static str,
        needs: &'static str,
        check: &'static str,
    },
    #[error(
        "--threshold is the liveness score's, which face match does not have: its decline \
         threshold is --face-match-threshold"
    )]
    LivenessThresholdForFaceMatch,
    #[error("--check face-match needs --ref PATH: the reference image to compare the selfie with")]
    NoReference,
    #[error("--price-per-call must be zero or a positive amount in US dollars, got {0}")]
    Price(f64),
    #[error("--score-margin must be a number of points from 0 to 100, got {0}")]
    ScoreMargin(f64),
    #[error("--max-requests must be at least 1")]
    MaxRequests,
    #[error("--out {0} exists and is not a folder")]
    OutNotDir(PathBuf),
    #[error(transparent)]
    SignKey(#[from] crate::journal::seal::KeyError),
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    #[error("--metadata: {0}")]
    Metadata(crate::didit::ParamError),
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    #[error(
        "--{flag} must be 1 to {MAX_LABEL_CHARS} characters of text without control characters \
         (line breaks, tabs)"
    )]
    Label { flag: &'static str },
}

/// The longest `--operator` or `--purpose`.
pub const MAX_LABEL_CHARS: usize = 500;

/// `--operator` or `--purpose`, checked: printable text of a sensible length, trimmed.
fn label(flag: &'static str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    let v = v.trim().to_string();
    if v.is_empty() || v.chars().count() > MAX_LABEL_CHARS || v.chars().any(char::is_control) {
        return Err(ConfigError::Label { flag });
    }
    Ok(Some(v))
}

/// `--timeout` in seconds, checked: positive and at most an hour.
pub fn request_timeout(secs: f64) -> Result<Duration, ConfigError> {
    if secs.is_finite() && secs > 0.0 && secs <= 3600.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ConfigError::Timeout(secs))
    }
}

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub base_url: String,
    /// `None` for `--emulator` (a random key is made) and for dry runs without a key.
    pub key: Option<ApiKey>,
    pub timeout: Duration,
    pub emulator: bool,
}

impl ApiConfig {
    /// `key_env` is the value of `DIDIT_API_KEY`, passed in so tests need not touch the
    /// process environment. A key is required unless `key_optional`.
    pub fn from_args(
        args: &ApiArgs,
        key_env: Option<String>,
        key_optional: bool,
    ) -> Result<Self, ConfigError> {
        let timeout = request_timeout(args.timeout)?;
        let key = if args.emulator {
            None
        } else {
            match ApiKey::resolve(args.api_key_file.as_deref(), key_env) {
                Ok(k) => Some(k),
                Err(KeyError::Missing) if key_optional => None,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Self {
            base_url: args.base_url.clone(),
            key,
            timeout,
            emulator: args.emulator,
        })
    }
}

/// Everything `scan` needs, validated.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    pub sources: Vec<PathBuf>,
    /// The check every item gets (passive liveness, or age estimation).
    pub call: &'static Endpoint,
    pub out: PathBuf,
    pub rate: Rate,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Request fields shared by every item (vendor_data and metadata come per item).
    pub params: Params,
    pub source_options: SourceOptions,
    pub price_per_call: f64,
    /// `--results-format`; `None` keeps the out dir's.
    pub results_format: Option<ResultsFormat>,
    /// This shard's share of `--max-requests` (all of it when not sharded).
    pub max_requests: Option<u64>,
    /// `--shard K/N` or `--shard-from-env`; `rate` and `max_requests` are then this shard's
    /// share of the key's budget.
    pub shard: Option<crate::shard::Plan>,
    pub dry_run: bool,
    /// `--allow-empty`: a source with no image is not an error.
    pub allow_empty: bool,
    pub retry_failed: bool,
    /// Read every finished item on resume, whatever its version (`--checksum`).
    pub checksum: bool,
    pub fresh: bool,
    pub force: bool,
    /// `--rebuild-from-journal`: caches that disagree with a verified journal are rebuilt.
    pub rebuild_from_journal: bool,
    /// `--sign-key`: signs seals, the caches and SHA256SUMS.
    pub signer: Option<std::sync::Arc<crate::journal::Signer>>,
    pub dedupe: bool,
    pub retry_unknown: bool,
    pub api: ApiConfig,
    pub quiet: bool,
    pub verbose: u8,
    /// `--operator`, else the OS user and host.
    pub operator: String,
    /// `--purpose`.
    pub purpose: Option<String>,
    /// The command line as typed, secrets removed (set by the caller that has it; empty in
    /// tests that build settings directly).
    pub command_line: Vec<String>,
    /// `--backoff-ms`, as given (for the run header).
    pub backoff_ms: u64,
    /// `--include-face-attributes`.
    pub include_face_attributes: bool,
}

impl ScanConfig {
    pub fn from_args(args: ScanArgs, key_env: Option<String>) -> Result<Self, ConfigError> {
        let rate: Rate = args.rate.parse()?;
        if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
            return Err(ConfigError::Concurrency(args.concurrency));
        }
        if args.max_retries > MAX_RETRIES {
            return Err(ConfigError::Retries(args.max_retries));
        }
        let choice = CheckChoice::from_args(&args.which, args.request.threshold)?;
        let pairs = choice.call.images.len() == 2;
        let references = match (pairs, args.ref_dir) {
            (true, Some(dir)) => Some(crate::input::References::Dir(dir)),
            (true, None) => Some(crate::input::References::Column(args.ref_column)),
            (false, Some(_)) => {
                return Err(ConfigError::NotForCheck {
                    flag: "--ref-dir",
                    needs: "face-match",
                    check: choice.call.check,
                });
            }
            (false, None) if args.ref_column != "ref_path" => {
                return Err(ConfigError::NotForCheck {
                    flag: "--ref-column",
                    needs: "face-match",
                    check: choice.call.check,
                });
            }
            (false, None) => None,
        };
        if args.max_requests == Some(0) {
            return Err(ConfigError::MaxRequests);
        }
        if args.out.exists() && !args.out.is_dir() {
            return Err(ConfigError::OutNotDir(args.out));
        }
        let shard = crate::shard::Plan::resolve(
            args.shard.as_deref(),
            args.shard_from_env,
            args.shard_total,
            rate,
            args.max_requests,
            |name| std::env::var(name).ok(),
        )?;
        let (rate, max_requests) = match &shard {
            Some(plan) => (plan.rate(), plan.max_requests()),
            None => (rate, args.max_requests),
        };
        let api = ApiConfig::from_args(&args.api, key_env, args.dry_run)?;
        let operator =
            label("operator", args.operator)?.unwrap_or_else(crate::audit::default_operator);
        let purpose = label("purpose", args.purpose)?;
        let backoff_ms = args.backoff_ms;
        let retry = RetryPolicy {
            max_retries: args.max_retries,
            base: Duration::from_millis(args.backoff_ms.max(1)),
            cap: Duration::from_secs(120),
        };
        Ok(Self {
            sources: args.sources,
            out: args.out.clone(),
            rate,
            concurrency: args.concurrency,
            retry,
            call: choice.call,
            params: Params {
                threshold: choice.threshold,
                min_age: choice.min_age,
                rotate_image: args.request.rotate_image,
                save_api_request: args.request.save_api_request,
                vendor_data: None,
                metadata: None,
                reference: None,
            },
            source_options: SourceOptions {
                hidden: args.hidden,
                follow_links: args.follow_links,
                vendor_data_from: args.vendor_data_from.map(|v| match v {
                    crate::cli::VendorDataFrom::Stem => crate::input::VendorDataFrom::Stem,
                    crate::cli::VendorDataFrom::Parent => crate::input::VendorDataFrom::Parent,
                }),
                path_column: args.path_column,
                id_column: args.id_column,
                vendor_data_column: args.vendor_data_column,
                metadata_column: args.metadata_column,
                track_duplicates: true,
                spill_dir: Some(args.out.clone()),
                storage: crate::input::bucket::StorageOptions {
                    endpoint: args.s3_endpoint,
                    region: args.s3_region,
                },
                filters: crate::input::filter::Filters::new(args.include, args.exclude)?,
                references,
            },
            price_per_call: ReportConfig::price_per_call(&args.cost, choice.call)?,
            results_format: results_format(&args.results),
            max_requests,
            shard,
            dry_run: args.dry_run,
            allow_empty: args.allow_empty,
            retry_failed: args.retry_failed,
            checksum: args.checksum,
            fresh: args.fresh,
            force: args.force,
            rebuild_from_journal: args.rebuild_from_journal,
            signer: signer(args.sign_key.as_deref())?,
            dedupe: !args.no_dedupe,
            retry_unknown: !args.no_retry_unknown,
            api,
            quiet: args.quiet,
            verbose: args.verbose,
            operator,
            purpose,
            command_line: Vec::new(),
            backoff_ms,
            include_face_attributes: args.include_face_attributes,
        })
    }
}

/// `scan ARGV...` as settings, for the crate's unit tests.
#[cfg(test)]
pub(crate) fn scan_config(argv: &[&str]) -> Result<ScanConfig, ConfigError> {
    use clap::Parser;
    let argv = ["liveness-batch", "scan"].iter().chain(argv);
    let crate::cli::Command::Scan(args) = crate::cli::Cli::try_parse_from(argv).unwrap().command
    else {
        unreachable!()
    };
    ScanConfig::from_args(*args, Some("k3y".into()))
}

#[cfg(test)]
mod tests;

pub use crate::report::ReportConfig;

/// `--sign-key FILE`, opened (the password of an encrypted key from the environment).
fn signer(
    path: Option<&std::path::Path>,
) -> Result<Option<std::sync::Arc<crate::journal::Signer>>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let password = std::env::var(crate::journal::seal::PASSWORD_ENV).ok();
    Ok(Some(std::sync::Arc::new(crate::journal::Signer::open(
        path, password,
    )?)))
}

/// `--results-format`, as the outputs name it.
pub fn results_format(args: &crate::cli::ResultsArgs) -> Option<ResultsFormat> {
    args.results_format.map(|f| match f {
        crate::cli::ResultsFormat::Json => ResultsFormat::Json,
        crate::cli::ResultsFormat::Jsonl => ResultsFormat::Jsonl,
        crate::cli::ResultsFormat::Both => ResultsFormat::Both,
    })
}

impl ReportConfig {
    pub fn from_args(args: crate::cli::ReportArgs) -> Result<Self, ConfigError> {
        let m = args.score_margin;
        if !(m.is_finite() && (0.0..=100.0).contains(&m)) {
            return Err(ConfigError::ScoreMargin(m));
        }
        Ok(Self {
            // Checked when given; otherwise the journal's check sets it, once it is read.
            price_per_call: match args.cost.price_per_call {
                Some(_) => Some(Self::price_per_call(&args.cost, &crate::didit::LIVENESS)?),
                None => None,
            },
            results_format: results_format(&args.results),
            dirs: args.dirs,
            out: args.out,
            baseline: args.baseline,
            score_margin: m,
            include_face_attributes: args.include_face_attributes,
            signer: signer(args.sign_key.as_deref())?,
            public_key: args
                .public_key
                .as_deref()
                .map(crate::journal::seal::Verifier::open)
                .transpose()?,
        })
    }

    /// `--price-per-call`, checked: a finite amount of zero or more US dollars; `call`'s list
    /// price when not given.
    pub fn price_per_call(
        cost: &crate::cli::CostArgs,
        call: &Endpoint,
    ) -> Result<f64, ConfigError> {
        let price = cost.price_per_call.unwrap_or(call.price_usd);
        if price.is_finite() && price >= 0.0 {
            Ok(price)
        } else {
            Err(ConfigError::Price(price))
        }
    }
}

/// Everything the `emulator` command needs, validated.
#[derive(Debug, Clone)]
pub struct EmulatorCommand {
    pub config: EmulatorConfig,
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
}

impl EmulatorCommand {
    pub fn from_args(args: crate::cli::EmulatorArgs) -> Result<Self, ConfigError> {
        let rate_limit = crate::emulator::parse_rate_limit(&args.rate_limit)
            .map_err(EmulatorError::RateLimit)?;
        let config = EmulatorConfig {
            api_key: args.api_key.trim().to_string(),
            auth_401: args.auth_401,
            rate_limit,
            credits: args.credits,
            sandbox: args.sandbox,
            latency: Duration::from_millis(args.latency_ms),
            jitter: Duration::from_millis(args.jitter_ms),
            faults: Faults {
                p500: args.fault_500,
                p502: args.fault_502,
                p503: args.fault_503,
                p429: args.fault_429,
                reset: args.fault_reset,
                stall: args.fault_stall,
            },
            stall: Duration::from_secs(args.stall_secs),
            spurious_retry_after: args.fault_429_retry_after,
            seed: args.seed,
            log: args.log.clone(),
            billing_forbidden: args.billing_forbidden,
        };
        config.validate()?;
        Ok(Self {
            config,
            port: args.port,
        })
    }
}

#[cfg(test)]
mod emulator_tests;
/// `--threshold`, checked: absent (Didit's default) or a finite number from 0 to 100.
pub(crate) fn threshold(t: Option<f64>) -> Result<Option<f64>, ConfigError> {
    match t {
        Some(t) if !(t.is_finite() && (0.0..=100.0).contains(&t)) => Err(ConfigError::Threshold(t)),
        _ => Ok(t),
    }
}

/// The check a command runs and its own settings, validated.
#[derive(Debug, Clone, Copy)]
pub struct CheckChoice {
    pub call: &'static Endpoint,
    /// The decline threshold sent: `--threshold` (liveness, age; Didit's default when `None`)
    /// or `--face-match-threshold` (always sent: 30 when not given).
    pub threshold: Option<f64>,
    /// Age estimation's minimum age (always sent: 18 when not given).
    pub min_age: Option<u32>,
}

/// Face match's decline threshold when none is given: Didit's standalone default, sent
/// explicitly so that the journal and the summary say which value decided.
pub const FACE_MATCH_DEFAULT_THRESHOLD: f64 = 30.0;
/// Age estimation's minimum age when none is given: Didit's default.
pub const DEFAULT_MIN_AGE: u32 = 18;

impl CheckChoice {
    /// `--check` and its flags, with `--threshold` (the liveness score's).
    pub fn from_args(
        args: &crate::cli::WhichCheckArgs,
        liveness_threshold: Option<f64>,
    ) -> Result<Self, ConfigError> {
        use crate::cli::CheckKind;
        let call = match args.kind {
            CheckKind::Liveness => &didit::LIVENESS,
            CheckKind::FaceMatch => &didit::FACE_MATCH,
            CheckKind::Age => &didit::AGE,
        };
        let not_for = |flag, needs| ConfigError::NotForCheck {
            flag,
            needs,
            check: call.check,
        };
        let liveness_threshold = threshold(liveness_threshold)?;
        if args.kind != CheckKind::FaceMatch && args.face_match_threshold.is_some() {
            return Err(not_for("--face-match-threshold", "face-match"));
        }
        if args.kind != CheckKind::Age && args.min_age.is_some() {
            return Err(not_for("--min-age", "age"));
        }
        Ok(match args.kind {
            CheckKind::Liveness => Self {
                call,
                threshold: liveness_threshold,
                min_age: None,
            },
            CheckKind::FaceMatch => {
                if liveness_threshold.is_some() {
                    return Err(ConfigError::LivenessThresholdForFaceMatch);
                }
                let t = args
                    .face_match_threshold
                    .unwrap_or(FACE_MATCH_DEFAULT_THRESHOLD);
                if !(t.is_finite() && (0.0..=100.0).contains(&t)) {
                    return Err(ConfigError::FaceMatchThreshold(t));
                }
                Self {
                    call,
                    threshold: Some(t),
                    min_age: None,
                }
            }
            CheckKind::Age => {
                let age = args.min_age.unwrap_or(i64::from(DEFAULT_MIN_AGE));
                let min_age = u32::try_from(age)
                    .ok()
                    .filter(|a| *a <= 100)
                    .ok_or(ConfigError::MinAge(age))?;
                Self {
                    call,
                    threshold: liveness_threshold,
                    min_age: Some(min_age),
                }
            }
        })
    }
}

/// `--max-retries`, checked: at most [`MAX_RETRIES`].
pub(crate) fn max_retries(n: u32) -> Result<u32, ConfigError> {
    if n > MAX_RETRIES {
        Err(ConfigError::Retries(n))
    } else {
        Ok(n)
    }
}

/// Everything `check` needs, validated: nothing is read or sent before all of it is right.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// The check to run.
    pub call: &'static Endpoint,
    /// The one image to screen (read and checked by `check` itself).
    pub image: PathBuf,
    /// Face match's reference image (read and checked like the image).
    pub reference: Option<PathBuf>,
    /// Every request field, vendor_data and metadata included.
    pub params: Params,
    /// Print the API's JSON as received instead of the readable summary.
    pub json: bool,
    pub retry: RetryPolicy,
    pub api: ApiConfig,
    pub verbose: u8,
}

impl CheckConfig {
    /// `key_env` is the value of `DIDIT_API_KEY`; a key is required unless `--emulator`.
    pub fn from_args(
        args: crate::cli::CheckArgs,
        key_env: Option<String>,
    ) -> Result<Self, ConfigError> {
        let choice = CheckChoice::from_args(&args.which, args.request.threshold)?;
        match (choice.call.images.len(), &args.reference) {
            (1, Some(_)) => {
                return Err(ConfigError::NotForCheck {
                    flag: "--ref",
                    needs: "face-match",
                    check: choice.call.check,
                });
            }
            (2, None) => return Err(ConfigError::NoReference),
            _ => {}
        }
        let metadata = match &args.metadata {
            Some(text) => Some(crate::didit::parse_metadata(text).map_err(ConfigError::Metadata)?),
            None => None,
        };
        let retry = RetryPolicy::default_for_api().with_max_retries(max_retries(args.max_retries)?);
        let api = ApiConfig::from_args(&args.api, key_env, false)?;
        Ok(Self {
            call: choice.call,
            image: args.image,
            reference: args.reference,
            params: Params {
                threshold: choice.threshold,
                min_age: choice.min_age,
                reference: None,
                rotate_image: args.request.rotate_image,
                save_api_request: args.request.save_api_request,
                vendor_data: args.vendor_data,
                metadata,
            },
            json: args.json,
            retry,
            api,
            verbose: args.verbose,
        })
    }
}
