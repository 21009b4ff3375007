//! The study configuration (SPEC §3): read from TOML, checked once at load.
//!
//! Every problem names the file, the line and the key, and says what is
//! allowed; unknown keys are errors so a typo never silently changes a
//! default. All problems are reported together, not just the first: keys
//! and kinds are checked against [`config_schema`] (which is what refuses
//! unknown keys, so the structs below accept extra ones), then values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use crate::study::config_schema;
use crate::study::units::KnownAnalyte;

/// Where `labfeed` looks when neither `--config` nor `$LABFEED_CONFIG` is set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/labfeed/labfeed.toml";

/// A checked study configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    pub study: Study,
    pub storage: Storage,
    /// `[audit]` (SPEC §9): the key and head file of the audit chain.
    pub audit: Audit,
    /// `[web]` (SPEC §11); the defaults when absent.
    pub web: Web,
    pub watch: Option<Watch>,
    pub logging: Logging,
    /// Analytes by name (`c_peptide`, `glucose`).
    pub analytes: BTreeMap<String, Analyte>,
    pub instruments: Vec<Instrument>,
    pub serial: Vec<SerialPort>,
    pub listen: Vec<Listener>,
    pub mmtt: Mmtt,
    pub visits: Vec<Visit>,
    /// `samples.id_pattern`: how a sample ID encodes participant, visit and minute.
    pub sample_id_pattern: Option<Regex>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Study {
    pub id: String,
    /// IANA zone for times that carry no offset (most analyzers send none).
    pub timezone: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Storage {
    /// A file (SQLite) or a `postgresql://` URL (SPEC §10).
    pub database: PathBuf,
    /// This daemon's name on a shared PostgreSQL database (default: the host name).
    pub instance: Option<String>,
    /// Where a daemon on PostgreSQL keeps the files it keeps beside an
    /// SQLite database (lock, health, refused peers, audit head); default:
    /// the configuration file's directory.
    pub state_dir: Option<PathBuf>,
}

/// An instance name is shown in logs, status and receipts: short and plain.
pub fn valid_instance(name: &str) -> bool {
    (1..=63).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Storage {
    /// `database` for messages: a URL without its password or parameters.
    pub fn shown(&self) -> String {
        let Some(text) = self.database.to_str().filter(|_| self.is_postgres()) else {
            return self.database.display().to_string();
        };
        let (scheme, rest) = text.split_once("://").unwrap_or(("postgresql", text));
        // A password may hold '/', '?', '#' or '@': everything before the
        // last '@' is the user and password, of which only the user is shown.
        let (user, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (format!("{}@", userinfo.split(':').next().unwrap_or_default()), rest),
            None => (String::new(), rest),
        };
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        format!("{scheme}://{user}{host}/{path}")
    }

    /// Whether `database` names a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.database.to_str().is_some_and(|d| d.starts_with("postgresql://") || d.starts_with("postgres://"))
    }
}

impl Config {
    /// The path whose siblings are this daemon's own files (`<base>.lock`,
    /// `<base>.health`, `<base>.peers`, `<base>.audit-head`): the SQLite
    /// database itself, or `<state_dir>/<instance>` for PostgreSQL.
    pub fn local_base(&self, instance: &str) -> PathBuf {
        if !self.storage.is_postgres() {
            return self.storage.database.clone();
        }
        let dir = match &self.storage.state_dir {
            Some(dir) => dir.clone(),
            None => self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned(),
        };
        dir.join(instance)
    }
}

/// `[web]` (SPEC §11): where `labfeed serve` listens, and its TLS files.
#[derive(Debug, Clone, Deserialize)]
pub struct Web {
    /// Default `127.0.0.1:8080`.
    pub address: Option<String>,
    /// PEM certificate chain and private key; both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Where the console listens unless `[web] address` says otherwise: this machine only.
pub const DEFAULT_WEB_ADDRESS: &str = "127.0.0.1:8080";

impl Web {
    /// The address to bind, and whether it is this machine only.
    pub fn socket_address(&self) -> Result<std::net::SocketAddr, String> {
        let text = self.address.as_deref().unwrap_or(DEFAULT_WEB_ADDRESS);
        text.parse().map_err(|_| format!("{text:?} is not an IP address and port, e.g. \"{DEFAULT_WEB_ADDRESS}\""))
    }

    /// The certificate and key, when TLS is configured.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        self.tls_cert.as_deref().zip(self.tls_key.as_deref())
    }
}

/// `[audit]`: both optional. Without a key the chain is plain SHA-256, which
/// anyone with write access can recompute.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Audit {
    /// At least 32 secret bytes, readable by the service alone.
    pub key_file: Option<PathBuf>,
    /// Where the chain's head is recorded (default: beside the database).
    pub head_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Watch {
    pub inbox: PathBuf,
    pub archive: PathBuf,
    pub quarantine: PathBuf,
    /// `inotify` (local disks) or `poll` (CIFS/NFS shares, which send no events).
    #[serde(default = "default_watch_mode")]
    pub mode: WatchMode,
    /// How often `poll` mode looks, and how often either mode rescans as a safety net.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: u64,
    /// Where no close or rename-in was seen (`poll` mode, files found by a
    /// scan), a file is taken once unchanged (size and modification time)
    /// for this long; a close or rename-in seen by inotify takes it at once.
    #[serde(default = "default_settle")]
    pub settle_seconds: f64,
    /// Larger files are quarantined unread.
    #[serde(default = "default_max_file_size")]
    pub max_file_size_mib: u64,
}

/// How the inbox is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    Inotify,
    Poll,
}

fn default_watch_mode() -> WatchMode {
    WatchMode::Inotify
}
fn default_poll_interval() -> u64 {
    2
}
fn default_settle() -> f64 {
    1.0
}
fn default_max_file_size() -> u64 {
    64
}

impl Watch {
    /// The size limit in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_size_mib.saturating_mul(1 << 20)
    }
}

/// Logging (the daemon); `RUST_LOG` overrides `level`.
#[derive(Debug, Clone, Deserialize)]
pub struct Logging {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter such as `labfeed=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for Logging {
    fn default() -> Self {
        Logging { level: default_log_level() }
    }
}

/// One measured quantity and how its results are judged.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Analyte {
    /// Canonical unit: every result is converted to it before storage.
    pub unit: String,
    /// Lower limit of quantification in the canonical unit; below it a result is BLQ.
    pub lloq: Option<f64>,
    /// Values outside `[low, high]` (canonical unit) are IMPLAUSIBLE.
    pub plausible: Option<[f64; 2]>,
    /// Specimen type for SDTM LBSPEC (`SERUM`, `PLASMA`, …) when the
    /// message names none; checked at load against CDISC SPECTYPE.
    pub specimen: Option<String>,
    /// SDTM LBTESTCD; defaults in [`Config::lb_test`].
    pub test_code: Option<String>,
    /// SDTM LBTEST; defaults in [`Config::lb_test`].
    pub test_name: Option<String>,
}

/// LBTESTCD and LBTEST: as configured, else the CDISC terms of the built-in
/// analytes, else the name upper-cased without other characters than
/// letters, digits and `_` (checked at load, so never an invalid code).
fn lb_test_of(name: &str, analyte: &Analyte) -> (String, String) {
    let (code, test) = match KnownAnalyte::from_name(name) {
        Some(KnownAnalyte::CPeptide) => ("CPEPTIDE".to_owned(), "C-peptide".to_owned()),
        Some(KnownAnalyte::Glucose) => ("GLUC".to_owned(), "Glucose".to_owned()),
        None => {
            let code = name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_');
            (code.map(|c| c.to_ascii_uppercase()).collect(), name.to_owned())
        }
    };
    (analyte.test_code.clone().unwrap_or(code), analyte.test_name.clone().unwrap_or(test))
}

#[derive(Debug, Clone, Deserialize)]
pub struct Instrument {
    pub name: String,
    /// Matches ASTM H.5 / HL7 MSH-3 component 1 of dropped files.
    pub sender: String,
    #[serde(default)]
    pub decimal_comma: bool,
    /// Keep comment free text (NTE, C, text OBX of unmapped tests): off by
    /// default because lab staff type names and phone numbers there.
    #[serde(default)]
    pub keep_comments: bool,
    /// Test code as sent → analyte name.
    #[serde(default)]
    pub tests: BTreeMap<String, String>,
    /// `false` for instruments whose O.8 is a registration time, not the draw time.
    #[serde(default = "yes")]
    pub trust_collection_time: bool,
    /// How the instrument frames ASTM on a serial or TCP link.
    #[serde(default)]
    pub link_style: LinkStyle,
    /// Largest E1381 frame text accepted on a link (LIS01-A2 allows 63,993; E1381-95 240).
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
}

/// ASTM framing on a link, per instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStyle {
    /// E1381 / LIS01-A2: ENQ, numbered frames with checksums, EOT.
    #[default]
    Framed,
    /// The Maglumi "simplified envelope": ENQ STX records ETX EOT, no frame number or checksum.
    Simplified,
    /// Plain records with no link protocol (`H|…` … `L|1|N`).
    Unframed,
}

fn default_max_frame_bytes() -> usize {
    crate::astm::receiver::DEFAULT_MAX_FRAME_TEXT
}

impl Instrument {
    /// The E1381 receiver settings for this instrument's links.
    pub fn receiver_config(&self) -> crate::astm::receiver::Config {
        use crate::astm::receiver::{Config, Style};
        Config {
            style: match self.link_style {
                LinkStyle::Framed => Style::Framed,
                LinkStyle::Simplified => Style::Simplified,
                LinkStyle::Unframed => Style::Unframed,
            },
            max_frame_text: self.max_frame_bytes.max(1),
            ..Config::default()
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SerialPort {
    pub instrument: String,
    pub path: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_parity")]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    #[serde(default = "default_flow_control")]
    pub flow_control: FlowControl,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_parity() -> Parity {
    Parity::None
}
fn default_stop_bits() -> u8 {
    1
}
fn default_flow_control() -> FlowControl {
    FlowControl::None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkProtocol {
    Astm,
    Mllp,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub instrument: String,
    pub address: SocketAddr,
    pub protocol: LinkProtocol,
    /// Peers that may connect. Without `allow`, a loopback listener takes
    /// loopback peers only (a non-loopback one must list them).
    pub allow: Vec<IpBlock>,
    /// A connection silent this long is closed; so is one whose message in
    /// progress trickles in slower than the floor over this long.
    pub idle: Duration,
    /// Bytes one peer address may send this listener in an hour.
    pub max_bytes_per_hour: u64,
}

/// An address or CIDR block of `allow` (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// The loopback blocks a listener without `allow` takes.
    pub const LOOPBACK: [IpBlock; 2] = [
        IpBlock { network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), prefix: 8 },
        IpBlock { network: IpAddr::V6(Ipv6Addr::LOCALHOST), prefix: 128 },
    ];

    /// `a.b.c.d`, `a.b.c.d/n`, an IPv6 address, or one with `/n`; host bits
    /// set below the prefix are refused (`10.0.0.1/8` is likely a typo).
    pub fn parse(text: &str) -> Result<IpBlock, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, n)) => (a, Some(n)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block such as \"192.168.10.0/24\""))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(n) => match n.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be a whole number from 0 to {max}")),
            },
        };
        let block = IpBlock { network, prefix };
        if block.masked(network) != bits(network) {
            return Err(format!("{text:?} has bits set after the prefix; did you mean {}?", block.normalised()));
        }
        Ok(block)
    }

    /// Whether `peer` is in this block (IPv4-mapped IPv6 peers count as IPv4).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        peer.is_ipv4() == self.network.is_ipv4() && self.masked(peer) == self.masked(self.network)
    }

    /// `addr` with the bits after the prefix cleared (a shift by the full width is 0).
    fn masked(&self, addr: IpAddr) -> u128 {
        let width: u32 = if addr.is_ipv4() { 32 } else { 128 };
        let host = width.saturating_sub(u32::from(self.prefix));
        bits(addr).checked_shr(host).unwrap_or(0).checked_shl(host).unwrap_or(0)
    }

    fn normalised(&self) -> String {
        let n = self.masked(self.network);
        let addr = match self.network {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(0))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        };
        format!("{addr}/{}", self.prefix)
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaselineSample {
    /// The 0-min sample only (TrialNet's published convention).
    Zero,
    /// The mean of the −10 and 0 min samples.
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlqRule {
    HalfLloq,
    Lloq,
    Zero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingRule {
    None,
    Interpolate,
}

/// The MMTT schedule and how its AUC is computed.
#[derive(Debug, Clone)]
pub struct Mmtt {
    /// Scheduled minutes relative to meal start, ascending.
    pub timepoints: Vec<i32>,
    /// Allowed |actual − nominal| collection time in minutes, unless overridden.
    pub window_minutes: u32,
    /// Per-timepoint window overrides.
    pub windows: BTreeMap<i32, u32>,
    pub auc_from: i32,
    pub auc_to: i32,
    pub baseline: BaselineSample,
    pub blq: BlqRule,
    pub missing: MissingRule,
}

impl Mmtt {
    /// The collection window for a nominal minute.
    pub fn window(&self, minute: i32) -> u32 {
        self.windows.get(&minute).copied().unwrap_or(self.window_minutes)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Visit {
    pub code: String,
    pub name: String,
    /// The visit that changes from baseline are taken against.
    #[serde(default)]
    pub baseline: bool,
}

/// One thing wrong in the configuration, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file (0 when the file could not be read).
    pub line: usize,
    /// Dotted key path, e.g. `analytes.c_peptide.lloq`.
    pub key: String,
    pub message: String,
}

/// Why a configuration was refused: every problem found, with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.path.display();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match (p.line, p.key.is_empty()) {
                (0, _) => write!(f, "{file}: {}", p.message)?,
                (line, true) => write!(f, "{file}:{line}: {}", p.message)?,
                (line, false) => write!(f, "{file}:{line}: {}: {}", p.key, p.message)?,
            }
        }
        Ok(())
    }
}

// The file as written; spans let problems found after parsing point at lines.
#[derive(Deserialize)]
struct RawConfig {
    study: Spanned<Study>,
    storage: Storage,
    #[serde(default)]
    audit: Audit,
    web: Option<Spanned<Web>>,
    watch: Option<Spanned<Watch>>,
    logging: Option<Spanned<Logging>>,
    #[serde(default)]
    analytes: BTreeMap<Spanned<String>, Spanned<Analyte>>,
    #[serde(default)]
    instruments: Vec<Spanned<Instrument>>,
    #[serde(default)]
    serial: Vec<Spanned<SerialPort>>,
    #[serde(default)]
    listen: Vec<Spanned<RawListener>>,
    mmtt: Option<Spanned<RawMmtt>>,
    #[serde(default)]
    visits: Vec<Spanned<Visit>>,
    samples: Option<Spanned<RawSamples>>,
}

#[derive(Deserialize)]
struct RawListener {
    instrument: String,
    address: String,
    #[serde(default = "default_protocol")]
    protocol: LinkProtocol,
    allow: Option<Vec<String>>,
    idle_seconds: Option<u64>,
    max_bytes_per_hour: Option<u64>,
}

/// `listen[].idle_seconds` when not given.
pub const DEFAULT_IDLE_SECONDS: u64 = 60;
/// `listen[].max_bytes_per_hour` when not given (64 MiB: hundreds of times
/// what an analyzer sends in a busy hour, well under a disk's worth).
pub const DEFAULT_MAX_BYTES_PER_HOUR: u64 = 64 << 20;
/// The bounds of `max_bytes_per_hour`: 1 KiB (tests) to 1 TiB.
const BYTES_PER_HOUR_RANGE: std::ops::RangeInclusive<u64> = 1024..=(1 << 40);
/// The longest `idle_seconds` (a day): longer is surely a mistake.
const MAX_IDLE_SECONDS: u64 = 86_400;

fn default_protocol() -> LinkProtocol {
    LinkProtocol::Astm
}

#[derive(Deserialize)]
struct RawMmtt {
    #[serde(default = "default_timepoints")]
    timepoints: Vec<i32>,
    #[serde(default = "default_window")]
    window_minutes: u32,
    #[serde(default)]
    windows: BTreeMap<String, u32>,
    #[serde(default)]
    auc_from: Option<i32>,
    #[serde(default)]
    auc_to: Option<i32>,
    #[serde(default = "default_baseline")]
    baseline: BaselineSample,
    #[serde(default = "default_blq")]
    blq: BlqRule,
    #[serde(default = "default_missing")]
    missing: MissingRule,
}

fn default_timepoints() -> Vec<i32> {
    vec![-10, 0, 15, 30, 60, 90, 120]
}
fn default_window() -> u32 {
    5
}
fn default_baseline() -> BaselineSample {
    BaselineSample::Zero
}
fn default_blq() -> BlqRule {
    BlqRule::HalfLloq
}
fn default_missing() -> MissingRule {
    MissingRule::None
}

impl Default for RawMmtt {
    fn default() -> Self {
        RawMmtt {
            timepoints: default_timepoints(),
            window_minutes: default_window(),
            windows: BTreeMap::new(),
            auc_from: None,
            auc_to: None,
            baseline: default_baseline(),
            blq: default_blq(),
            missing: default_missing(),
        }
    }
}

#[derive(Deserialize)]
struct RawSamples {
    id_pattern: Option<String>,
}

/// Collects problems with the line where their key is written.
struct Problems<'a> {
    text: &'a str,
    /// The parsed file, whose spans say where each key is written.
    root: Spanned<DeTable<'a>>,
    list: Vec<Problem>,
}

impl Problems<'_> {
    /// Record a problem with `key`; it points at the line where the key is
    /// written (inside an inline table too), else at its nearest written
    /// parent, else at `span`.
    fn add(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let offset = config_schema::key_offset(self.root.get_ref(), &key).unwrap_or(span.start);
        self.list.push(Problem { line: line_of(self.text, offset), key, message: message.into() });
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes().get(..end).map_or(0, |head| head.iter().filter(|&&b| b == b'\n').count())
}

/// The dotted key at a byte offset: the nearest `[table]` / `[[array]]`
/// header above it plus the `key =` on its line.
fn key_at(text: &str, offset: usize) -> String {
    let line_no = line_of(text, offset);
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no.saturating_sub(1)).copied().unwrap_or("").trim();
    let local =
        if line.starts_with('[') { "" } else { line.split_once('=').map_or("", |(k, _)| k.trim().trim_matches('"')) };
    let table = lines
        .iter()
        .take(line_no)
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    match (table.is_empty(), local.is_empty()) {
        (true, _) => local.to_owned(),
        (false, true) => table,
        (false, false) => format!("{table}.{local}"),
    }
}

impl Config {
    /// Read and check the configuration at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            problems: vec![Problem {
                line: 0,
                key: String::new(),
                message: format!("cannot read the configuration: {e}"),
            }],
        })?;
        Config::from_toml(&text, path)
    }

    /// Check configuration text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError { path: path.to_owned(), problems };
        let (document, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            let problems = syntax
                .iter()
                .map(|e| {
                    let offset = e.span().map_or(0, |s| s.start);
                    Problem {
                        line: line_of(text, offset),
                        key: key_at(text, offset),
                        message: format!("not valid TOML: {}", e.message().trim()),
                    }
                })
                .collect();
            return Err(fail(problems));
        }
        // Every unknown key and wrongly typed value first, in plain words;
        // serde below would stop at the first and name Rust types.
        let findings = config_schema::check(&document);
        if !findings.is_empty() {
            let problems = findings
                .into_iter()
                .map(|f| Problem { line: line_of(text, f.offset), key: f.key, message: f.message })
                .collect();
            return Err(fail(problems));
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            fail(vec![Problem {
                line: line_of(text, offset),
                key: key_at(text, offset),
                message: e.message().to_owned(),
            }])
        })?;
        let mut problems = Problems { text, root: document, list: Vec::new() };
        let config = check(raw, path, &mut problems);
        // In file order, as the file's reader goes through them.
        problems.list.sort_by_key(|p| p.line);
        if problems.list.is_empty() { Ok(config) } else { Err(fail(problems.list)) }
    }

    /// The instrument a dropped file's sender field names.
    pub fn instrument_by_sender(&self, sender: &str) -> Option<&Instrument> {
        self.instruments.iter().find(|i| i.sender == sender)
    }

    pub fn instrument(&self, name: &str) -> Option<&Instrument> {
        self.instruments.iter().find(|i| i.name == name)
    }

    /// SDTM LBTESTCD and LBTEST of an analyte (see [`lb_test_of`]).
    pub fn lb_test(&self, analyte: &str) -> (String, String) {
        match self.analytes.get(analyte) {
            Some(a) => lb_test_of(analyte, a),
            None => lb_test_of(analyte, &Analyte::default()),
        }
    }

    pub fn baseline_visit(&self) -> Option<&Visit> {
        self.visits.iter().find(|v| v.baseline)
    }

    /// The position of a visit in `[[visits]]`: the order reports list visits in.
    pub fn visit_index(&self, code: &str) -> Option<usize> {
        self.visits.iter().position(|v| v.code == code)
    }

    /// Whether results may name this visit: any visit when none are
    /// configured, else only a configured one.
    pub fn accepts_visit(&self, code: &str) -> bool {
        self.visits.is_empty() || self.visit_index(code).is_some()
    }
}

fn check(raw: RawConfig, path: &Path, p: &mut Problems<'_>) -> Config {
    let study_span = raw.study.span();
    let study = raw.study.into_inner();
    if study.id.trim().is_empty() {
        p.add(study_span.clone(), "study.id", "must not be empty: the study's registry ID, e.g. \"NCT02057211\"");
    }
    if let Some(instance) = &raw.storage.instance
        && !valid_instance(instance)
    {
        p.add(
            0..0,
            "storage.instance",
            format!(
                "{instance:?} is not an instance name: 1 to 63 letters, digits, '.', '-' or '_', e.g. \"lab-pc-1\""
            ),
        );
    }
    if let Err(e) = jiff::tz::TimeZone::get(&study.timezone) {
        p.add(
            study_span,
            "study.timezone",
            format!("{:?} is not a known IANA time zone ({e}); e.g. \"Europe/Stockholm\"", study.timezone),
        );
    }

    let mut analytes = BTreeMap::new();
    let mut test_codes: BTreeMap<String, String> = BTreeMap::new();
    for (name, analyte) in raw.analytes {
        let (span, key) = (analyte.span(), format!("analytes.{}", name.get_ref()));
        let analyte = analyte.into_inner();
        if let Some(known) = KnownAnalyte::from_name(name.get_ref())
            && known.factor(&analyte.unit, &analyte.unit).is_none()
        {
            p.add(
                span.clone(),
                format!("{key}.unit"),
                format!(
                    "{:?} is not a unit labfeed can convert {} to; use one of {}",
                    analyte.unit,
                    name.get_ref(),
                    known.known_units().join(", ")
                ),
            );
        }
        if analyte.unit.trim().is_empty() {
            p.add(span.clone(), format!("{key}.unit"), "must not be empty");
        }
        if let Some(lloq) = analyte.lloq
            && !(lloq.is_finite() && lloq >= 0.0)
        {
            p.add(span.clone(), format!("{key}.lloq"), "must be a number ≥ 0 in the analyte's unit");
        }
        if let Some([low, high]) = analyte.plausible
            && !(low.is_finite() && high.is_finite() && low < high)
        {
            p.add(span.clone(), format!("{key}.plausible"), "must be [low, high] with low < high");
        }
        if let Some(specimen) = analyte.specimen.as_deref()
            && let Err(problem) = crate::study::cdisc::check_specimen(specimen)
        {
            p.add(span.clone(), format!("{key}.specimen"), problem);
        }
        let (code, test) = lb_test_of(name.get_ref(), &analyte);
        if let Err(problem) = crate::study::cdisc::check_test_code(&code) {
            let how =
                if analyte.test_code.is_some() { "" } else { " (derived from the analyte's name: set test_code)" };
            p.add(span.clone(), format!("{key}.test_code"), format!("{code:?}{how} {problem}"));
        } else if let Some(other) = test_codes.insert(code.clone(), name.get_ref().clone()) {
            p.add(
                span.clone(),
                format!("{key}.test_code"),
                format!("{code:?} is already the test code of analytes.{other}: each analyte needs its own"),
            );
        }
        if let Err(problem) = crate::study::cdisc::check_test_name(&test) {
            let how = if analyte.test_name.is_some() { "" } else { " (the analyte's name: set test_name)" };
            p.add(span.clone(), format!("{key}.test_name"), format!("{test:?}{how} {problem}"));
        }
        analytes.insert(name.into_inner(), analyte);
    }

    let mut instruments: Vec<Instrument> = Vec::new();
    for (i, instrument) in raw.instruments.into_iter().enumerate() {
        let span = instrument.span();
        let instrument = instrument.into_inner();
        let key = format!("instruments[{i}]");
        if instrument.name.trim().is_empty() {
            p.add(span.clone(), format!("{key}.name"), "must not be empty");
        }
        if instrument.sender.trim().is_empty() {
            p.add(
                span.clone(),
                format!("{key}.sender"),
                "must not be empty: ASTM H.5 / HL7 MSH-3 component 1 as the instrument sends it",
            );
        }
        if instruments.iter().any(|other| other.name == instrument.name) {
            p.add(
                span.clone(),
                format!("{key}.name"),
                format!("{:?} is used by an earlier instrument; names must be unique", instrument.name),
            );
        }
        if instruments.iter().any(|other| other.sender == instrument.sender) {
            p.add(
                span.clone(),
                format!("{key}.sender"),
                format!(
                    "{:?} is used by an earlier instrument; a sender must choose one instrument",
                    instrument.sender
                ),
            );
        }
        for (code, analyte) in &instrument.tests {
            if !analytes.contains_key(analyte) {
                let known: Vec<&str> = analytes.keys().map(String::as_str).collect();
                p.add(
                    span.clone(),
                    format!("{key}.tests.{code}"),
                    format!(
                        "analyte {analyte:?} is not defined; defined analytes: {}",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                );
            }
        }
        instruments.push(instrument);
    }
    let instrument_names: BTreeSet<String> = instruments.iter().map(|i| i.name.clone()).collect();
    let unknown_instrument = |p: &mut Problems<'_>, span: Range<usize>, key: String, name: &str| {
        if !instrument_names.contains(name) {
            let known: Vec<&str> = instrument_names.iter().map(String::as_str).collect();
            p.add(
                span,
                key,
                format!(
                    "instrument {name:?} is not defined in [[instruments]]; defined: {}",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            );
        }
    };

    let mut serial = Vec::new();
    for (i, port) in raw.serial.into_iter().enumerate() {
        let span = port.span();
        let port = port.into_inner();
        let key = format!("serial[{i}]");
        unknown_instrument(p, span.clone(), format!("{key}.instrument"), &port.instrument);
        if port.path.as_os_str().is_empty() {
            p.add(span.clone(), format!("{key}.path"), "must not be empty; prefer a stable /dev/serial/by-id/… path");
        }
        if port.baud == 0 {
            p.add(span.clone(), format!("{key}.baud"), "must be a positive baud rate such as 9600");
        }
        if !matches!(port.data_bits, 7 | 8) {
            p.add(span.clone(), format!("{key}.data_bits"), "must be 7 or 8");
        }
        if !matches!(port.stop_bits, 1 | 2) {
            p.add(span.clone(), format!("{key}.stop_bits"), "must be 1 or 2");
        }
        serial.push(port);
    }

    let mut listen = Vec::new();
    for (i, listener) in raw.listen.into_iter().enumerate() {
        let span = listener.span();
        let listener = listener.into_inner();
        let key = format!("listen[{i}]");
        unknown_instrument(p, span.clone(), format!("{key}.instrument"), &listener.instrument);
        let mut allow = Vec::new();
        for (j, entry) in listener.allow.iter().flatten().enumerate() {
            match IpBlock::parse(entry) {
                Ok(block) => allow.push(block),
                Err(why) => p.add(span.clone(), format!("{key}.allow[{j}]"), why),
            }
        }
        if listener.allow.as_ref().is_some_and(Vec::is_empty) {
            p.add(
                span.clone(),
                format!("{key}.allow"),
                "must not be empty: list the addresses or CIDR blocks that may connect",
            );
        }
        let idle_seconds = listener.idle_seconds.unwrap_or(DEFAULT_IDLE_SECONDS);
        if !(1..=MAX_IDLE_SECONDS).contains(&idle_seconds) {
            p.add(span.clone(), format!("{key}.idle_seconds"), format!("must be from 1 to {MAX_IDLE_SECONDS} seconds"));
        }
        let max_bytes_per_hour = listener.max_bytes_per_hour.unwrap_or(DEFAULT_MAX_BYTES_PER_HOUR);
        if !BYTES_PER_HOUR_RANGE.contains(&max_bytes_per_hour) {
            p.add(
                span.clone(),
                format!("{key}.max_bytes_per_hour"),
                format!("must be from {} to {} bytes", BYTES_PER_HOUR_RANGE.start(), BYTES_PER_HOUR_RANGE.end()),
            );
        }
        match listener.address.parse::<SocketAddr>() {
            Ok(address) => {
                if listener.allow.is_none() {
                    if address.ip().is_loopback() {
                        allow = IpBlock::LOOPBACK.to_vec();
                    } else {
                        p.add(
                            span.clone(),
                            format!("{key}.allow"),
                            format!(
                                "is required for a listener on {address}, which is not a loopback address: \
                                 list the analyzers' addresses or CIDR blocks, e.g. allow = [\"192.168.10.0/24\"]"
                            ),
                        );
                    }
                }
                listen.push(Listener {
                    instrument: listener.instrument,
                    address,
                    protocol: listener.protocol,
                    allow,
                    idle: Duration::from_secs(idle_seconds),
                    max_bytes_per_hour,
                })
            }
            Err(_) => p.add(
                span,
                format!("{key}.address"),
                format!("{:?} is not an IP address and port such as \"127.0.0.1:5001\"", listener.address),
            ),
        }
    }

    let (mmtt_span, raw_mmtt) = match raw.mmtt {
        Some(m) => (m.span(), m.into_inner()),
        None => (0..0, RawMmtt::default()),
    };
    let mmtt = check_mmtt(raw_mmtt, mmtt_span, p);

    let mut visits: Vec<Visit> = Vec::new();
    for (i, visit) in raw.visits.into_iter().enumerate() {
        let span = visit.span();
        let visit = visit.into_inner();
        let key = format!("visits[{i}]");
        if visit.code.trim().is_empty() {
            p.add(span.clone(), format!("{key}.code"), "must not be empty");
        }
        if visits.iter().any(|v| v.code == visit.code) {
            p.add(
                span.clone(),
                format!("{key}.code"),
                format!("{:?} is used by an earlier visit; codes must be unique", visit.code),
            );
        }
        if visit.baseline && visits.iter().any(|v| v.baseline) {
            p.add(span.clone(), format!("{key}.baseline"), "only one visit can be the baseline");
        }
        visits.push(visit);
    }

    let sample_id_pattern = raw.samples.and_then(|samples| {
        let span = samples.span();
        let pattern = samples.into_inner().id_pattern?;
        match Regex::new(&pattern) {
            Ok(re) => {
                let names: BTreeSet<&str> = re.capture_names().flatten().collect();
                let missing: Vec<&str> =
                    ["participant", "visit", "minute"].into_iter().filter(|n| !names.contains(n)).collect();
                if missing.is_empty() {
                    Some(re)
                } else {
                    p.add(
                        span,
                        "samples.id_pattern",
                        format!(
                            "needs the named groups (?P<participant>…), (?P<visit>…) and (?P<minute>…); missing: {}",
                            missing.join(", ")
                        ),
                    );
                    None
                }
            }
            Err(e) => {
                p.add(span, "samples.id_pattern", format!("is not a valid regular expression: {e}"));
                None
            }
        }
    });

    let web = match raw.web {
        None => Web { address: None, tls_cert: None, tls_key: None },
        Some(w) => {
            let span = w.span();
            let w = w.into_inner();
            match w.socket_address() {
                Err(why) => p.add(span.clone(), "web.address", why),
                Ok(address) if !address.ip().is_loopback() && w.tls().is_none() => p.add(
                    span.clone(),
                    "web.address",
                    format!(
                        "{address} is not a loopback address: the console serves passwords and study data, so it \
                         needs TLS there (set tls_cert and tls_key), or listen on 127.0.0.1"
                    ),
                ),
                Ok(_) => {}
            }
            if w.tls_cert.is_some() != w.tls_key.is_some() {
                let missing = if w.tls_cert.is_none() { "web.tls_cert" } else { "web.tls_key" };
                p.add(span, missing, "tls_cert and tls_key go together: give both, or neither");
            }
            w
        }
    };

    let watch = raw.watch.map(|w| {
        let span = w.span();
        let w = w.into_inner();
        if !(1..=86_400).contains(&w.poll_interval_seconds) {
            p.add(span.clone(), "watch.poll_interval_seconds", "must be between 1 and 86400 seconds");
        }
        if !(w.settle_seconds.is_finite() && (0.0..=3600.0).contains(&w.settle_seconds)) {
            p.add(span.clone(), "watch.settle_seconds", "must be between 0 and 3600 seconds");
        }
        if w.max_file_size_mib == 0 {
            p.add(span.clone(), "watch.max_file_size_mib", "must be at least 1 (MiB)");
        }
        for (key, dir) in [("inbox", &w.inbox), ("archive", &w.archive), ("quarantine", &w.quarantine)] {
            if dir.as_os_str().is_empty() {
                p.add(span.clone(), format!("watch.{key}"), "must not be empty");
            }
        }
        for (key, dir) in [("archive", &w.archive), ("quarantine", &w.quarantine)] {
            if !w.inbox.as_os_str().is_empty() && dir.starts_with(&w.inbox) {
                // Files moved there would be taken again as new deliveries.
                p.add(
                    span.clone(),
                    format!("watch.{key}"),
                    format!("must not be inside the inbox (watch.inbox = {:?})", w.inbox.display().to_string()),
                );
            }
        }
        w
    });
    let logging = match raw.logging {
        Some(l) => {
            let span = l.span();
            let l = l.into_inner();
            if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
                p.add(
                    span,
                    "logging.level",
                    format!("{:?} is not a log level (error, warn, info, debug, trace) or filter", l.level),
                );
            }
            l
        }
        None => Logging::default(),
    };
    Config {
        path: path.to_owned(),
        study,
        storage: raw.storage,
        audit: raw.audit,
        web,
        watch,
        logging,
        analytes,
        instruments,
        serial,
        listen,
        mmtt,
        visits,
        sample_id_pattern,
    }
}

fn check_mmtt(raw: RawMmtt, span: Range<usize>, p: &mut Problems<'_>) -> Mmtt {
    let tp = &raw.timepoints;
    if tp.is_empty() {
        p.add(span.clone(), "mmtt.timepoints", "must list at least one minute, e.g. [-10, 0, 15, 30, 60, 90, 120]");
    }
    if tp.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
        p.add(span.clone(), "mmtt.timepoints", "must be strictly ascending minutes without repeats");
    }
    let mut windows = BTreeMap::new();
    for (minute, window) in &raw.windows {
        match minute.trim().parse::<i32>() {
            Ok(m) if tp.contains(&m) => {
                windows.insert(m, *window);
            }
            _ => p.add(
                span.clone(),
                format!("mmtt.windows.{minute}"),
                format!("{minute:?} is not one of mmtt.timepoints {tp:?}"),
            ),
        }
    }
    let first_nonnegative = tp.iter().copied().find(|&m| m >= 0).unwrap_or(0);
    let auc_from = raw.auc_from.unwrap_or(first_nonnegative);
    let auc_to = raw.auc_to.unwrap_or_else(|| tp.last().copied().unwrap_or(0));
    for (key, minute) in [("mmtt.auc_from", auc_from), ("mmtt.auc_to", auc_to)] {
        if !tp.contains(&minute) {
            p.add(span.clone(), key, format!("{minute} is not one of mmtt.timepoints {tp:?}"));
        }
    }
    if auc_from >= auc_to {
        p.add(span.clone(), "mmtt.auc_to", format!("must be later than auc_from ({auc_from})"));
    }
    if raw.baseline == BaselineSample::Mean && !(tp.contains(&-10) && tp.contains(&0)) {
        p.add(span, "mmtt.baseline", "\"mean\" averages the -10 and 0 min samples, so both must be in mmtt.timepoints");
    }
    Mmtt {
        timepoints: raw.timepoints,
        window_minutes: raw.window_minutes,
        windows,
        auc_from,
        auc_to,
        baseline: raw.baseline,
        blq: raw.blq,
        missing: raw.missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/labfeed.example.toml");

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("labfeed.toml"))
    }

    fn problems(text: &str) -> Vec<Problem> {
        load(text).expect_err("should be refused").problems
    }

    #[test]
    fn the_example_config_is_valid_and_complete() {
        let config = load(EXAMPLE).expect("the shipped example is valid");
        assert_eq!(config.study.id, "NCT02057211");
        assert_eq!(config.analytes["c_peptide"].unit, "nmol/L");
        assert_eq!(config.analytes["c_peptide"].lloq, Some(0.017));
        assert_eq!(config.analytes["c_peptide"].specimen.as_deref(), Some("SERUM"));
        assert_eq!(config.analytes["glucose"].specimen.as_deref(), Some("PLASMA"));
        assert_eq!(config.mmtt.timepoints, [-10, 0, 15, 30, 60, 90, 120]);
        assert_eq!(config.mmtt.window(15), 2);
        assert_eq!(config.mmtt.window(60), 5);
        assert_eq!((config.mmtt.auc_from, config.mmtt.auc_to), (0, 120));
        assert_eq!(config.baseline_visit().map(|v| v.code.as_str()), Some("V0"));
        assert_eq!(config.instrument_by_sender("cobas-e411").map(|i| i.trust_collection_time), Some(false));
        assert_eq!(config.serial[0].parity, Parity::None);
        assert_eq!(config.listen[0].protocol, LinkProtocol::Mllp);
        let re = config.sample_id_pattern.as_ref().expect("pattern");
        let caps = re.captures("U07-V4-T-10").expect("matches");
        assert_eq!(&caps["minute"], "-10");
    }

    #[test]
    fn unknown_keys_are_errors_naming_line_and_key() {
        let text = EXAMPLE.replace("window_minutes = 5", "window_minutes = 5\nwindow_minuts = 7");
        let p = problems(&text);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "mmtt.window_minuts");
        assert_eq!(p[0].line, text.lines().position(|l| l.starts_with("window_minuts")).unwrap() + 1);
        assert_eq!(p[0].message, "unknown key; did you mean `window_minutes`?");
    }

    #[test]
    fn wrong_types_and_values_name_what_is_allowed() {
        let p = problems(&EXAMPLE.replace("parity = \"none\"", "parity = \"mark\""));
        assert_eq!(p[0].key, "serial[0].parity");
        assert!(p[0].message.contains("one of \"none\", \"even\", \"odd\""), "{}", p[0].message);

        let p = problems(&EXAMPLE.replace("lloq = 0.017", "lloq = \"low\""));
        assert_eq!(p[0].key, "analytes.c_peptide.lloq");
        assert_eq!(p[0].message, "must be a number, not text (\"low\")");
    }

    #[test]
    fn misspelt_keys_and_wrong_types_are_all_reported_in_plain_words() {
        // A misspelt required key is one problem (the unknown key), not two.
        let text = EXAMPLE
            .replace("timezone = \"Europe/Stockholm\"", "time_zone = \"Europe/Stockholm\"")
            .replace("window_minutes = 5", "window_minute = 5")
            .replace("baud = 9600", "baud = \"9600\"")
            .replace("decimal_comma = false", "decimal_comma = \"no\"");
        let p = problems(&text);
        let line = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
        let shown: Vec<(usize, &str, &str)> = p.iter().map(|p| (p.line, p.key.as_str(), p.message.as_str())).collect();
        assert_eq!(
            shown,
            [
                (line("time_zone"), "study.time_zone", "unknown key; did you mean `timezone`?"),
                (line("decimal_comma"), "instruments[0].decimal_comma", "must be true or false, not text (\"no\")"),
                (line("baud"), "serial[0].baud", "must be a whole number, not text (\"9600\")"),
                (line("window_minute"), "mmtt.window_minute", "unknown key; did you mean `window_minutes`?"),
            ]
        );
    }

    #[test]
    fn a_whole_number_is_a_number_too() {
        let text = EXAMPLE
            .replace("settle_seconds = 1.0", "settle_seconds = 1")
            .replace("lloq = 0.017", "lloq = 1")
            .replace("plausible = [0.0, 20.0]", "plausible = [0, 20]");
        let config = load(&text).expect("integers where numbers are asked");
        assert_eq!(config.analytes["c_peptide"].plausible, Some([0.0, 20.0]));
        assert_eq!(config.watch.map(|w| w.settle_seconds), Some(1.0));
    }

    #[test]
    fn every_spec_key_is_accepted_even_those_nothing_reads_yet() {
        let text = EXAMPLE
            .replace("[watch]", "[audit]\nkey_file = \"/etc/labfeed/audit.key\"\nhead_file = \"/var/lib/labfeed/audit.head\"\n\n[web]\naddress = \"127.0.0.1:8080\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n\n[watch]")
            .replace("database = \"/var/lib/labfeed/labfeed.db\"", "database = \"/var/lib/labfeed/labfeed.db\"\ninstance = \"lab-pc-1\"")
            .replace(
                "decimal_comma = false",
                "decimal_comma = false\nlink_style = \"simplified\"\nmax_frame_bytes = 240",
            )
            .replace("keep_comments = false", "keep_comments = true")
            .replace("protocol = \"mllp\"", "protocol = \"mllp\"\nallow = [\"127.0.0.1\", \"10.0.0.0/8\"]\nidle_seconds = 60");
        let config = load(&text).expect("every SPEC §3 key loads");
        assert_eq!(config.listen.len(), 1);
        assert_eq!(config.instruments[0].link_style, LinkStyle::Simplified);
        assert_eq!(config.instruments[0].max_frame_bytes, 240);
    }

    #[test]
    fn a_database_url_is_shown_without_its_password_whatever_it_holds() {
        let shown = |url: &str| Storage { database: PathBuf::from(url), instance: None, state_dir: None }.shown();
        for secret in ["s3cr/et?x", "p#w", "a@b", "plain"] {
            let url = format!("postgresql://labfeed:{secret}@db.example.org:5432/study?sslmode=require");
            let text = shown(&url);
            assert_eq!(text, "postgresql://labfeed@db.example.org:5432/study", "{secret}");
        }
        assert_eq!(shown("postgres://db/study"), "postgres://db/study");
        assert_eq!(shown("/var/lib/labfeed/labfeed.db"), "/var/lib/labfeed/labfeed.db");
    }

    #[test]
    fn allow_blocks_parse_and_match() {
        let block = |t: &str| IpBlock::parse(t).unwrap();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(block("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!block("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(block("127.0.0.2").contains(ip("127.0.0.2")));
        assert!(!block("127.0.0.2").contains(ip("127.0.0.1")));
        assert!(block("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!block("0.0.0.0/0").contains(ip("::2")));
        assert!(block("fd00::/8").contains(ip("fd12::1")));
        assert!(block("::/0").contains(ip("2001:db8::1")));
        // An IPv4 peer on a dual-stack socket arrives IPv4-mapped.
        assert!(block("192.168.10.0/24").contains(ip("::ffff:192.168.10.7")));
        assert!(IpBlock::LOOPBACK.iter().any(|b| b.contains(ip("127.1.2.3"))));
        assert!(IpBlock::LOOPBACK.iter().any(|b| b.contains(ip("::1"))));
        assert!(!IpBlock::LOOPBACK.iter().any(|b| b.contains(ip("10.0.0.1"))));
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0.0/x", "10.0.0", "lab-pc", "", "10.0.0.1/8"] {
            assert!(IpBlock::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            IpBlock::parse("10.0.0.1/8").unwrap_err(),
            "\"10.0.0.1/8\" has bits set after the prefix; did you mean 10.0.0.0/8?"
        );
    }

    #[test]
    fn listeners_take_allow_and_idle_seconds() {
        let config = load(&EXAMPLE.replace("protocol = \"mllp\"", "protocol = \"mllp\"\nidle_seconds = 5")).unwrap();
        assert_eq!(config.listen[0].allow, IpBlock::LOOPBACK, "loopback only by default");
        assert_eq!(config.listen[0].idle, Duration::from_secs(5));
        let config = load(EXAMPLE).unwrap();
        assert_eq!(config.listen[0].idle, Duration::from_secs(DEFAULT_IDLE_SECONDS));
        assert_eq!(config.listen[0].max_bytes_per_hour, DEFAULT_MAX_BYTES_PER_HOUR);
        let config =
            load(&EXAMPLE.replace("protocol = \"mllp\"", "protocol = \"mllp\"\nmax_bytes_per_hour = 4096")).unwrap();
        assert_eq!(config.listen[0].max_bytes_per_hour, 4096);
        let p = problems(&EXAMPLE.replace("protocol = \"mllp\"", "protocol = \"mllp\"\nmax_bytes_per_hour = 10"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "listen[0].max_bytes_per_hour");

        let open = EXAMPLE.replace("127.0.0.1:5001", "0.0.0.0:5001");
        let p = problems(&open);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "listen[0].allow");
        assert!(p[0].message.contains("not a loopback address"), "{}", p[0].message);
        let p = problems(&open.replace(
            "protocol = \"mllp\"",
            "protocol = \"mllp\"\nallow = [\"10.0.0.0/8\", \"10.1/16\"]\nidle_seconds = 0",
        ));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["listen[0].allow[1]", "listen[0].idle_seconds"]);
        let p = problems(&EXAMPLE.replace("protocol = \"mllp\"", "protocol = \"mllp\"\nallow = []"));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "listen[0].allow");
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let text = EXAMPLE
            .replace("timezone = \"Europe/Stockholm\"", "timezone = \"Europe/Uppsala\"")
            .replace("unit = \"nmol/L\"", "unit = \"mg/dL\"")
            .replace("\"GLUC\" = \"glucose\"", "\"GLUC\" = \"glucos\"")
            .replace("data_bits = 8", "data_bits = 9")
            .replace("address = \"127.0.0.1:5001\"", "address = \"localhost\"")
            .replace("windows = { \"15\" = 2, \"30\" = 3 }", "windows = { \"45\" = 2 }")
            .replace("auc_to = 120", "auc_to = 100")
            .replace("code = \"V1\"", "code = \"V0\"")
            .replace("(?P<minute>", "(?P<min>");
        let p = problems(&text);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "study.timezone",
                "analytes.c_peptide.unit",
                "instruments[0].tests.GLUC",
                "serial[0].data_bits",
                "listen[0].address",
                "mmtt.windows.45",
                "mmtt.auc_to",
                "visits[1].code",
                "samples.id_pattern",
            ]
        );
        assert!(p.iter().all(|p| p.line > 0));
        let line_of_text = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
        assert_eq!(p[0].line, line_of_text("timezone ="), "problems point at the key's own line");
        assert_eq!(p[3].line, line_of_text("data_bits = 9"));
        assert_eq!(p[4].line, line_of_text("address = \"localhost\""));
        assert_eq!(p[6].line, line_of_text("auc_to = 100"));
    }

    #[test]
    fn lb_test_codes_and_names_are_checked_at_load() {
        let extra = |table: &str| EXAMPLE.replace("[analytes.glucose]", &format!("{table}\n[analytes.glucose]"));
        // A name that would make a code starting with a digit, and one too long.
        let text = extra("[analytes.25ohvitd]\nunit = \"nmol/L\"\n[analytes.pro_insulin]\nunit = \"pmol/L\"\n");
        let p = problems(&text);
        let found: Vec<(&str, bool)> =
            p.iter().map(|p| (p.key.as_str(), p.message.contains("set test_code"))).collect();
        assert_eq!(found, [("analytes.25ohvitd.test_code", true), ("analytes.pro_insulin.test_code", true)], "{p:?}");
        assert!(p[0].message.contains("starts with a digit"), "{}", p[0].message);

        // Two analytes with one code; a name over 40 characters; non-ASCII.
        let text = extra(&format!(
            "[analytes.proins_a]\nunit = \"pmol/L\"\ntest_code = \"PROINS\"\n\
             [analytes.proins_b]\nunit = \"pmol/L\"\ntest_code = \"PROINS\"\ntest_name = \"{}\"\n\
             [analytes.hba1c]\nunit = \"mmol/mol\"\ntest_name = \"HbA1c (glykerat Hb) – IFCC\"\n",
            "P".repeat(41)
        ));
        let p = problems(&text);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["analytes.proins_b.test_code", "analytes.proins_b.test_name", "analytes.hba1c.test_name"],
            "{p:?}"
        );
        assert!(p[0].message.contains("already the test code of analytes.proins_a"), "{}", p[0].message);
        assert!(p[1].message.contains("41 characters"), "{}", p[1].message);
        assert!(p[2].message.contains("printable ASCII"), "{}", p[2].message);
        let line = text.lines().position(|l| l.starts_with("test_code = \"PROINS\"")).unwrap() + 1;
        assert_eq!(p[0].line, line + 3, "the second one's own line");

        let config = load(&extra("[analytes.hba1c]\nunit = \"mmol/mol\"\n")).unwrap();
        assert_eq!(config.lb_test("hba1c"), ("HBA1C".into(), "hba1c".into()));
        assert_eq!(config.lb_test("c_peptide"), ("CPEPTIDE".into(), "C-peptide".into()));
        assert_eq!(config.lb_test("glucose"), ("GLUC".into(), "Glucose".into()));
    }

    #[test]
    fn a_specimen_that_is_not_a_spectype_term_is_refused_with_the_term() {
        let p = problems(&EXAMPLE.replace("specimen = \"PLASMA\"", "specimen = \"Plasma (EDTA)\""));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            (p[0].key.as_str(), p[0].message.as_str()),
            ("analytes.glucose.specimen", "\"Plasma (EDTA)\" is not a CDISC SPECTYPE term: write \"PLASMA\"")
        );
    }

    #[test]
    fn an_empty_specimen_is_refused_at_its_line_and_a_missing_one_is_fine() {
        let text = EXAMPLE.replace("specimen = \"PLASMA\"", "specimen = \" \"");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "analytes.glucose.specimen");
        assert_eq!(p[0].line, text.lines().position(|l| l.starts_with("specimen = \" \"")).unwrap() + 1);
        assert!(p[0].message.contains("SERUM"), "{}", p[0].message);

        let config = load(&EXAMPLE.replace("specimen = \"PLASMA\"", "")).unwrap();
        assert_eq!(config.analytes["glucose"].specimen, None);
    }

    #[test]
    fn error_display_names_file_line_and_key() {
        let err = load(&EXAMPLE.replace("auc_from = 0", "auc_from = 5")).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("labfeed.toml:"), "{shown}");
        assert!(shown.contains(": mmtt.auc_from: 5 is not one of mmtt.timepoints"), "{shown}");
    }

    #[test]
    fn missing_sections_and_unreadable_files_are_reported() {
        let p = problems("[study]\nid = \"X\"\ntimezone = \"UTC\"\n");
        assert!(p[0].message.contains("storage"), "{:?}", p[0]);
        let err = Config::load(Path::new("/nonexistent/labfeed.toml")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/labfeed.toml: cannot read"), "{err}");
    }

    #[test]
    fn minimal_config_gets_the_standard_mmtt() {
        let config = load("[study]\nid = \"X\"\ntimezone = \"UTC\"\n[storage]\ndatabase = \"x.db\"\n").unwrap();
        assert_eq!(config.mmtt.timepoints, [-10, 0, 15, 30, 60, 90, 120]);
        assert_eq!((config.mmtt.auc_from, config.mmtt.auc_to), (0, 120));
        assert_eq!(config.mmtt.blq, BlqRule::HalfLloq);
    }
}

/// The spelling each option has in the configuration file, for messages.
macro_rules! config_spelling {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $text),+ })
            }
        }
    };
}

config_spelling!(LinkProtocol { Astm => "astm", Mllp => "mllp" });
config_spelling!(WatchMode { Inotify => "inotify", Poll => "poll" });
config_spelling!(LinkStyle { Framed => "framed", Simplified => "simplified", Unframed => "unframed" });
config_spelling!(BaselineSample { Zero => "zero", Mean => "mean" });
config_spelling!(BlqRule { HalfLloq => "half_lloq", Lloq => "lloq", Zero => "zero" });
config_spelling!(MissingRule { None => "none", Interpolate => "interpolate" });
