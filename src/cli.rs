//! The command line: clap derive structs, and the shell completions and manual page generated
//! from them; no other logic. `config` validates the structs into settings.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Re-screen stored selfies in bulk with Didit's Passive Liveness API.
///
/// The API key is read from the DIDIT_API_KEY environment variable or from --api-key-file;
/// it is never accepted as a plain flag value and never printed.
#[derive(Debug, Parser)]
#[command(
    name = "liveness-batch",
    version,
    about,
    long_about = None,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const SCAN_EXIT_CODES: &str = "Exit codes: 0 every image has a result · 1 finished, some images \
have no result · 2 usage or configuration error · 3 stopped: key, permission or endpoint refused · \
4 stopped: out of credits or --max-requests reached (resumable) · 130 interrupted · 143 terminated";

const CHECK_EXIT_CODES: &str = "Exit codes: 0 Approved · 1 Declined · 2 usage error or bad local file \
· 3 key, permission or endpoint refused · 4 out of credits · 5 the API kept failing after retries";

const REPORT_EXIT_CODES: &str = "Exit codes: 0 every item has a result · 1 some items have no \
result · 2 usage error or unreadable journal · 6 outputs could not be written · 8 merged shard \
folders do not prove coverage (a shard missing or given twice, other settings or input, a key in \
two shards)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Screen every image in folders and/or CSV manifests (the main job). Resumable.
    #[command(after_long_help = SCAN_EXIT_CODES)]
    Scan(Box<ScanArgs>),
    /// Screen one image (or, for face match, one pair) and print the decision; the exit code
    /// is the decision.
    #[command(after_long_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
    /// Rebuild results.csv/json, summary and report from the journal(s) in DIR; merge and
    /// verify shard folders.
    #[command(after_long_help = REPORT_EXIT_CODES)]
    Report(ReportArgs),
    /// Run the local Didit-compatible emulator of the passive liveness, face match and age
    /// estimation endpoints.
    Emulator(EmulatorArgs),
    /// Print the completion script for SHELL on stdout (e.g. `completions bash >
    /// /etc/bash_completion.d/liveness-batch`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff) on stdout: the program's, or one command's (e.g. `man scan |
    /// man -l -`).
    Man {
        #[arg(value_name = "COMMAND", value_parser = command_name)]
        command: Option<String>,
    },
}

/// A command's name, for `man COMMAND`.
fn command_name(name: &str) -> Result<String, String> {
    let cli = Cli::command();
    match cli.find_subcommand(name) {
        Some(sub) => Ok(sub.get_name().to_owned()),
        None => Err(format!(
            "not a command; one of: {}",
            cli.get_subcommands()
                .map(|s| s.get_name())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The completion script of `shell` for every command and flag above.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "liveness-batch", &mut out);
    out
}

/// The manual page (roff) of the program (its commands, each with a line) or of one of its
/// commands (its flags, with their defaults and the exit codes).
pub fn man_page(command: Option<&str>) -> std::io::Result<Vec<u8>> {
    let mut cli = Cli::command();
    cli.build();
    let man = match command.and_then(|c| cli.find_subcommand(c)) {
        Some(sub) => {
            let source = format!("liveness-batch {}", env!("CARGO_PKG_VERSION"));
            let title = format!("liveness-batch-{}", sub.get_name());
            clap_mangen::Man::new(sub.clone())
                .title(title)
                .source(source)
        }
        None => clap_mangen::Man::new(cli),
    };
    let mut out = Vec::new();
    man.render(&mut out)?;
    Ok(out)
}

/// Where the API is and how to authenticate: shared by `scan` and `check`.
#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Read the API key from this file (first line). Otherwise DIDIT_API_KEY is used.
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,

    /// API base URL. Plain http:// is refused unless the host is loopback.
    #[arg(
        long,
        env = "DIDIT_BASE_URL",
        default_value = "https://verification.didit.me"
    )]
    pub base_url: String,

    /// Timeout for one request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,

    /// Run against an in-process emulator on a loopback port instead of the real API.
    /// Every output is stamped SIMULATED.
    #[arg(long)]
    pub emulator: bool,
}

/// The request fields that change what Didit answers.
#[derive(Debug, Args, Clone)]
pub struct RequestArgs {
    /// Liveness score at or below which Didit declines (0-100, decimals allowed). Didit's default is 30.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub threshold: Option<f64>,

    /// Let Didit try 90-degree rotations of the image (slower).
    #[arg(long)]
    pub rotate_image: bool,

    /// Store each call as a session in Didit's console, enroll the face into the face index
    /// (passive liveness and age estimation do; face match enrolls no face) and fire the
    /// application's webhook. Default false: a bulk re-screen must not do that to production
    /// unless asked explicitly.
    #[arg(long, value_name = "true|false", default_value = "false", action = clap::ArgAction::Set)]
    pub save_api_request: bool,
}

/// How money is estimated: shared by `scan` and `report`.
#[derive(Debug, Args, Clone, Copy)]
pub struct CostArgs {
    /// Price of one billed call in US dollars, for the cost estimate [default: the check's
    /// list price, 0.10 for passive liveness].
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub price_per_call: Option<f64>,
}

/// Which JSON form of the results to write: shared by `scan` and `report`.
#[derive(Debug, Args, Clone, Copy)]
pub struct ResultsArgs {
    /// JSON form of the results beside results.csv: json (results.json, one array), jsonl
    /// (results.jsonl, one object a line: for large runs) or both. Default: the form the out
    /// dir already has, else json.
    #[arg(long, value_name = "json|jsonl|both")]
    pub results_format: Option<ResultsFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResultsFormat {
    Json,
    Jsonl,
    Both,
}

/// Which of Didit's checks a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckKind {
    /// Passive liveness of one selfie (US$0.10 a call).
    Liveness,
    /// The selfie against a reference image, e.g. an ID portrait (US$0.05 a call).
    FaceMatch,
    /// Passive liveness and an estimated age in one call (US$0.10 a call).
    Age,
}

/// The check and its own settings.
#[derive(Debug, Args, Clone)]
pub struct WhichCheckArgs {
    /// The check to run.
    #[arg(long = "check", value_name = "CHECK", value_enum, default_value_t = CheckKind::Liveness)]
    pub kind: CheckKind,

    /// Face match: similarity at or below which Didit declines (0-100). Always sent; 30 when
    /// not given, which Didit itself calls permissive (it suggests 50-60 for stricter checks).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub face_match_threshold: Option<f64>,

    /// Age estimation: the minimum age in whole years (0-100; 0 turns the age check off, the
    /// age is still estimated). Default 18.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub min_age: Option<i64>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The image to screen (JPEG, PNG, WebP or TIFF; at most 5 MB).
    pub image: PathBuf,

    #[command(flatten)]
    pub which: WhichCheckArgs,

    /// Face match: the reference image to compare the selfie with (same formats and limit).
    #[arg(long = "ref", value_name = "PATH")]
    pub reference: Option<PathBuf>,

    #[command(flatten)]
    pub request: RequestArgs,

    /// Your user id for this image; Didit echoes it back.
    #[arg(long, value_name = "S")]
    pub vendor_data: Option<String>,

    /// A JSON object Didit echoes back.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,

    /// Print the API's JSON response as received instead of the readable summary.
    #[arg(long)]
    pub json: bool,

    /// Retries for 429 and transient errors.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_retries: u32,

    #[command(flatten)]
    pub api: ApiArgs,

    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Folders, CSV manifests (.csv), bucket prefixes (s3://BUCKET/PREFIX/; gs:// and az://
    /// in builds with those features), or - for a manifest on standard input.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<PathBuf>,

    /// Output folder: journal, results, summary. Rerunning with the same folder resumes.
    #[arg(long, short, value_name = "DIR", default_value = "liveness-results")]
    pub out: PathBuf,

    /// Request rate: N/min, N/s or N/Ws (e.g. 240/min, 4/s, 30/6s). Default 240/min is 80% of
    /// the key's 300/min, leaving room for production traffic on the same key.
    #[arg(long, value_name = "RATE", default_value = "240/min")]
    pub rate: String,

    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,

    /// Retries per item for 429 and transient errors.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_retries: u32,

    /// First backoff step in milliseconds; it doubles per retry (with full jitter). A 429 always
    /// waits at least its Retry-After.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 2000,
        hide_short_help = true
    )]
    pub backoff_ms: u64,

    #[command(flatten)]
    pub request: RequestArgs,

    #[command(flatten)]
    pub which: WhichCheckArgs,

    /// Face match: find each selfie's reference image in DIR by the selfie's key: the same
    /// relative path, else the one image file in the same folder with the same name before
    /// its extension (u1.png pairs with DIR/u1.jpg). Without it, a manifest's ref_path column
    /// names each reference.
    #[arg(long, value_name = "DIR")]
    pub ref_dir: Option<PathBuf>,

    /// Face match: the manifest column holding each selfie's reference image (a path relative
    /// to the manifest, or an object URI).
    #[arg(
        long,
        value_name = "C",
        default_value = "ref_path",
        conflicts_with = "ref_dir"
    )]
    pub ref_column: String,

    /// For folder sources: take vendor_data from the file name's stem or its parent folder's name.
    #[arg(long, value_name = "stem|parent")]
    pub vendor_data_from: Option<VendorDataFrom>,

    /// Manifest column holding the image path.
    #[arg(long, value_name = "C", default_value = "path")]
    pub path_column: String,

    /// Manifest column holding a stable id (the item key). Default: "id" when present.
    #[arg(long, value_name = "C")]
    pub id_column: Option<String>,

    /// Manifest column holding vendor_data (your user id). Default: "vendor_data" when present.
    #[arg(long, value_name = "C")]
    pub vendor_data_column: Option<String>,

    /// Manifest column holding a JSON object sent as metadata. Default: "metadata" when present.
    #[arg(long, value_name = "C")]
    pub metadata_column: Option<String>,

    #[command(flatten)]
    pub cost: CostArgs,

    #[command(flatten)]
    pub results: ResultsArgs,

    /// Stop cleanly (exit 4, resumable) once this many billable calls were sent in this run.
    #[arg(long, value_name = "N")]
    pub max_requests: Option<u64>,

    /// Check every item and print counts, duration and cost; send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Keep Didit's estimated age, gender and face box in results.csv, results.json and
    /// results.jsonl (left out by default: a compliance report does not need them; the journal
    /// keeps Didit's answer as received either way).
    #[arg(long)]
    pub include_face_attributes: bool,

    /// Who runs this, for the audit trail (default: the OS user and host, user@host).
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,

    /// Why this runs: a free-text purpose or ticket, for the audit trail.
    #[arg(long, value_name = "TEXT")]
    pub purpose: Option<String>,

    /// Also redo items that ended rejected, unknown or with retries exhausted.
    #[arg(long)]
    pub retry_failed: bool,

    /// On resume, read and hash every item an earlier run finished, even when its size and
    /// modification time are the ones recorded; only changed content is sent again. For copies
    /// that keep times but not content.
    #[arg(long)]
    pub checksum: bool,

    /// Start a new journal; the old one is kept under a new name.
    #[arg(long, conflicts_with = "force")]
    pub fresh: bool,

    /// Resume even though settings that change results differ from the journal's.
    #[arg(long)]
    pub force: bool,

    /// Accept the journal as the truth when its caches (the resume index, the outputs'
    /// checkpoint) disagree with it: the journal must pass every check (chain, grammar,
    /// seals); the caches are then rebuilt from it. Without it such a resume stops (exit 8).
    #[arg(long, conflicts_with = "fresh")]
    pub rebuild_from_journal: bool,

    /// Sign the evidence with this minisign secret key (made by `minisign -G`; an encrypted
    /// key's password comes from LIVENESS_SIGN_PASSWORD): a signed `seal` line in the journal
    /// every 1,000 records, every 30 s and at the end of each run, and SHA256SUMS.minisig
    /// beside SHA256SUMS (checked with `minisign -Vm SHA256SUMS -p KEY.pub`). A signed journal
    /// is resumed only with the same key, and its seals are verified before anything is trusted.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,

    /// Send every item even when its content equals an earlier item's.
    #[arg(long)]
    pub no_dedupe: bool,

    /// Record a timeout or reset after the body was sent as `unknown` instead of retrying it
    /// (a retry may be billed twice).
    #[arg(long)]
    pub no_retry_unknown: bool,

    /// Include hidden files and folders when walking.
    #[arg(long)]
    pub hidden: bool,

    /// Follow symbolic links when walking (loops are detected).
    #[arg(long)]
    pub follow_links: bool,

    /// Take only the keys of folders and bucket prefixes that match GLOB (relative to the
    /// folder or prefix, '/' separators; `*` also matches '/', `**` any folders, `{a,b}`
    /// either; case-sensitive). Repeatable: a key matching any is taken. What is left out is
    /// listed in ignored.csv with the pattern.
    #[arg(long, value_name = "GLOB", action = clap::ArgAction::Append)]
    pub include: Vec<String>,

    /// Leave out the keys of folders and bucket prefixes that match GLOB (as --include).
    /// Repeatable; applied before --include.
    #[arg(long, value_name = "GLOB", action = clap::ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Accept a source that holds no image (a folder, manifest or bucket prefix with nothing
    /// to screen); without it, such a source is an error (exit 2), as a mistyped prefix is.
    #[arg(long)]
    pub allow_empty: bool,

    /// Screen only part K of N of the input (1-based), split by a stable hash of each item's
    /// key, for array jobs: every task runs the same command with its own K. --rate and
    /// --max-requests stay the key's budget; each shard takes 1/N of it.
    #[arg(long, value_name = "K/N", conflicts_with = "shard_from_env")]
    pub shard: Option<String>,

    /// Take K from the scheduler: JOB_COMPLETION_INDEX (Kubernetes Indexed Job),
    /// AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch) or SLURM_ARRAY_TASK_ID (Slurm, with its MIN, STEP
    /// and COUNT); N from --shard-total or SLURM_ARRAY_TASK_COUNT.
    #[arg(long)]
    pub shard_from_env: bool,

    /// With --shard-from-env: the number of tasks (the Job's completions, the array size).
    #[arg(long, value_name = "N", requires = "shard_from_env")]
    pub shard_total: Option<u32>,

    /// Endpoint of an S3-compatible store for s3:// sources (MinIO, Ceph, a test server); else
    /// AWS_ENDPOINT from the environment. Plain http only on loopback.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// Region for s3:// sources; else AWS_REGION or AWS_DEFAULT_REGION.
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,

    #[command(flatten)]
    pub api: ApiArgs,

    /// No progress and no summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,

    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VendorDataFrom {
    Stem,
    Parent,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output folders holding journal.jsonl. With several, they are merged into --out.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,

    /// Where to write merged outputs (required with more than one DIR).
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Compare with an earlier audit's output folder: items newly declined or approved, whose
    /// action changed or whose score moved, new or gone, in changes.csv, summary.md and
    /// report.html.
    #[arg(long, value_name = "OLD_DIR")]
    pub baseline: Option<PathBuf>,

    /// With --baseline: list a score that moved by more than this many points (0-100).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub score_margin: f64,

    #[command(flatten)]
    pub cost: CostArgs,

    #[command(flatten)]
    pub results: ResultsArgs,

    /// Keep Didit's estimated age, gender and face box in the results files (left out by
    /// default; the journal keeps Didit's answer as received).
    #[arg(long)]
    pub include_face_attributes: bool,

    /// Sign the rebuilt outputs with this minisign secret key: SHA256SUMS.minisig beside
    /// SHA256SUMS (an encrypted key's password comes from LIVENESS_SIGN_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,

    /// Verify the evidence with this minisign public key: every seal of the journal, that the
    /// journal ends sealed, and SHA256SUMS.minisig. Any failure: exit 8.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct EmulatorArgs {
    /// Port on 127.0.0.1; 0 picks a free one. The base URL is printed on stdout.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// The API key clients must send in x-api-key.
    #[arg(long, env = "DIDIT_API_KEY", hide_env_values = true)]
    pub api_key: String,

    /// Answer a wrong or missing key with 401 {"detail": "Invalid API Key."} instead of 403.
    #[arg(long)]
    pub auth_401: bool,

    /// Sliding-window rate limit per key: N/Ws (e.g. 300/60s, 10/2s). 0/60s disables it.
    #[arg(long, default_value = "300/60s")]
    pub rate_limit: String,

    /// Credits available; each 200 spends one. Unlimited when absent.
    #[arg(long)]
    pub credits: Option<u64>,

    /// Answer like a sandbox key: fixed Approved result, nothing billed.
    #[arg(long)]
    pub sandbox: bool,

    /// Answer GET /v3/billing/balance/ with 403, like a key that may not read billing.
    #[arg(long)]
    pub billing_forbidden: bool,

    /// Fixed latency per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Random extra latency up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,

    /// Probability (0-1) of a 500 with an empty body.
    #[arg(long, default_value_t = 0.0)]
    pub fault_500: f64,

    /// Probability (0-1) of a 502 with an HTML body.
    #[arg(long, default_value_t = 0.0)]
    pub fault_502: f64,

    /// Probability (0-1) of a 503.
    #[arg(long, default_value_t = 0.0)]
    pub fault_503: f64,

    /// Probability (0-1) of a spurious 429 with headers (another client used the budget).
    #[arg(long, default_value_t = 0.0)]
    pub fault_429: f64,

    /// Retry-After, in whole seconds, of a spurious 429 (--fault-429); 0 allowed.
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub fault_429_retry_after: u64,

    /// Probability (0-1) that the connection is dropped mid-request.
    #[arg(long, default_value_t = 0.0)]
    pub fault_reset: f64,

    /// Probability (0-1) that the request stalls longer than any client timeout.
    #[arg(long, default_value_t = 0.0)]
    pub fault_stall: f64,

    /// How long a stalled request stalls, in seconds.
    #[arg(long, default_value_t = 600)]
    pub stall_secs: u64,

    /// Seed for the fault injection and latency jitter.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Append one JSON line per request to this file.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}
