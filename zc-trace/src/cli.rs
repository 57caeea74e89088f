//! Command-line interface. Parsing and validation only; every bad value is rejected here with
//! a message that names the option and the accepted forms (clap exits with status 2).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::Format;
use crate::transfer::receiver::ReceiverMode;
use crate::transfer::sink::SinkKind;
use crate::transfer::strategies::{self, Strategy};

const EXAMPLES: &str = "\
Examples:
  zc-trace run                                   # 64 MiB generated payload, every strategy, table
  zc-trace run --size 16M --chunk 64K --iterations 5
  zc-trace run --strategies sendfile,splice --format json > result.json
  zc-trace run --file /var/log/syslog --cold --format markdown
  zc-trace run --claims my-course.toml --no-fail # check your own textbook's numbers
  zc-trace run --sink veth --no-sg --strategies sendfile   # sendfile without SG-DMA
  zc-trace probes                                # which hooks attach on this kernel, and how
  zc-trace doctor                                # what this host lets zc-trace observe, and fixes
  zc-trace strategies                            # the transfer strategies zc-trace knows

zc-trace must run as root to load its eBPF programs (CAP_BPF and CAP_PERFMON do only where
tracefs is readable: add CAP_DAC_READ_SEARCH where it is root-only; see `zc-trace doctor`).
Exit status: 0 success (every claim HOLDS or is NOT OBSERVABLE HERE), 1 a claim DIFFERS
(unless --no-fail), 2 bad input, 3 environment (privileges, tracefs, eBPF load), 4 a
measurement failed, 130 interrupted.";

#[derive(Debug, Parser)]
#[command(
    name = "zc-trace",
    version,
    about = "Count, with eBPF, what moving a file to a socket really costs: syscalls, \
             user/kernel transitions, page faults, context switches and copies",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// More diagnostics on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Move a payload through each strategy and report what each one cost.
    Run(RunArgs),
    /// Trace a program, started here (`-- CMD ARGS`) or already running (`--pid`): the same
    /// figures, provenance and byte ledger as `run`, for whatever it does.
    Trace(TraceArgs),
    /// The far end of `run --sink tcp:HOST:PORT`, on the other machine: reads each connection
    /// to its end, tells the sender how many bytes arrived, and prints it.
    Receive(ReceiveArgs),
    /// Print the seed article's claims (the default of --claims), in the TOML format --claims
    /// reads: a starting point for a course's own.
    Claims,
    /// How each figure of a strategy is obtained on this kernel, and the claims about it
    /// (attaches the probes, transfers nothing).
    Explain(ExplainArgs),
    /// List the kernel hooks zc-trace uses and the attach method chosen on this kernel.
    Probes(ProbesArgs),
    /// What this host lets zc-trace observe and what not, with the fix for each (exit 0 when
    /// zc-trace can run here, 3 when it cannot).
    Doctor(DoctorArgs),
    /// List the transfer strategies.
    Strategies,
    /// Print a shell completion script, e.g. `zc-trace completions bash >
    /// /etc/bash_completion.d/zc-trace`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `zc-trace man | man -l -`.
    Man,
    /// Remove what a zc-trace killed with SIGKILL left behind (network namespaces, temporary
    /// directories, a tracefs mount): only what is provably zc-trace's and whose zc-trace
    /// process is gone. `run` does the same before it starts, except for tracefs.
    Cleanup(CleanupArgs),
    /// Internal: the receiving end of the socket, run as a separate process.
    #[command(name = "__receiver", hide = true)]
    Receiver(ReceiverArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to color stdout: auto means a terminal and no NO_COLOR (no-color.org).
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty())
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Size of the generated payload (B, K, M, G; binary units; decimals such as 1.5M when
    /// they come to whole bytes). Ignored with --file.
    #[arg(long, default_value = "64M", value_parser = parse_nonzero_size)]
    pub size: u64,
    /// Bytes per transfer call (read/write/sendfile/splice length).
    #[arg(long, default_value = "128K", value_parser = parse_chunk)]
    pub chunk: u64,
    /// Comma-separated strategies to run; "all", alone or in the list, is every strategy in
    /// the standard order. One named twice runs once (with a warning).
    #[arg(long, default_value = "all", value_parser = parse_strategies)]
    pub strategies: StrategyList,
    /// Runs per strategy; the report shows the median and the spread (min..max).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub iterations: u32,
    /// Use this file as the payload instead of a generated one. It is only read, never modified.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Evict the source file from the page cache (posix_fadvise DONTNEED) before each run.
    #[arg(long)]
    pub cold: bool,
    /// Directory for the generated payload (an unnamed O_TMPFILE file; where the filesystem
    /// lacks O_TMPFILE, a file made in a private directory there and unlinked at once).
    #[arg(long, default_value = "/var/tmp")]
    pub tmpdir: PathBuf,
    /// Output format.
    #[arg(
        long,
        value_enum,
        default_value_t = Format::Table,
        default_value_if("json", "true", "json")
    )]
    pub format: Format,
    /// Short for --format json.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Where the payload goes: tcp (loopback), unix, pipe, file, null, veth, or
    /// tcp:HOST:PORT (a receiver elsewhere, through the device the kernel routes it to: run
    /// `zc-trace receive --listen ADDR:PORT` there). Strategies that need another kind of sink
    /// (copy_file_range writes a file) use their own and say so.
    #[arg(long = "sink", value_name = "SINK", default_value = "tcp", value_parser = parse_sink)]
    pub sink_arg: SinkArg,
    /// Turn scatter-gather off on the sending side (the article's "sendfile without SG-DMA"
    /// case): on the veth sink's device, or on a remote sink's device (restored on every exit).
    #[arg(long)]
    pub no_sg: bool,
    /// With --no-sg on a remote sink: turn scatter-gather off even on the device of the
    /// default route, which carries the host's other traffic.
    #[arg(long, requires = "no_sg")]
    pub force: bool,
    /// How the receiver of a socket or pipe sink consumes the data.
    #[arg(long, value_enum, default_value_t = ReceiverMode::Copy)]
    pub receiver: ReceiverMode,
    /// Claims to check instead of the seed article's (TOML; `zc-trace claims` prints the
    /// article's, in that format, to start from).
    #[arg(long, value_name = "FILE")]
    pub claims: Option<PathBuf>,
    /// Exit 0 even when a claim DIFFERS (by default the exit status is 1 then).
    #[arg(long)]
    pub no_fail: bool,
    /// Every column in the table (by default it keeps to what fits the terminal).
    #[arg(long)]
    pub wide: bool,
    /// Also how each figure was obtained, the syscalls, copy sites and byte ledger, and the
    /// evidence of each verdict.
    #[arg(long)]
    pub explain: bool,
    /// Verdicts in color: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// No progress lines on stderr (they are shown only on a terminal anyway).
    #[arg(short, long)]
    pub quiet: bool,
    /// Also write the report as JSON to FILE (the terminal still gets --format's).
    #[arg(long, value_name = "FILE")]
    pub export_json: Option<PathBuf>,
    /// Also write the report as markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub export_markdown: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE: per strategy a data-path diagram with
    /// the measured bytes, charts, the claims, and how each figure was obtained.
    #[arg(long, value_name = "FILE")]
    pub export_html: Option<PathBuf>,
    /// Hidden, for `cargo xtask bench`: the same transfers with no eBPF program loaded or
    /// attached, timed from user space. It is the baseline that the probes' cost on the
    /// transfer is measured against; figures only a probe can give say "not observable".
    /// Hidden because its report answers none of zc-trace's questions.
    #[arg(long, hide = true, conflicts_with = "claims")]
    pub untraced: bool,
}

const TRACE_EXAMPLES: &str = "\
Examples:
  zc-trace trace -- curl -so /dev/null http://127.0.0.1:8080/big   # a command, from its execve
  zc-trace trace --pid $(pgrep -d, nginx) --duration 10           # running processes
  zc-trace trace --expect zero-copy --pid 1234                    # exit 1 if a file byte is copied
  zc-trace trace --interval 1 --pid 1234                          # one line per second
  zc-trace trace --strategy sendfile --claims my-course.toml -- ./my-server

The command runs as the user who called sudo (SUDO_UID, SUDO_GID and that user's groups)
unless --as-root. It is traced from its execve on, with every thread and process it starts
(followed in the kernel); with --pid the processes' threads and descendants are traced, and
whatever they start while traced. The trace ends when every traced task has exited, at
--duration (the command is sent SIGTERM), or at Ctrl-C/SIGTERM (passed on to the command).
Exit status: the command's own (128+N when signal N ended it; 0 with --pid), except 1 when
--expect or a claim DIFFERS (unless --no-fail), 2 bad input, 3 environment, 4 a measurement
failed, 126 the command cannot be executed, 127 it was not found.";

/// What `trace --expect` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Expect {
    /// No file byte reaches a socket through user memory or a kernel-to-kernel copy.
    ZeroCopy,
}

/// TASKS holds this many tasks unless `trace --max-tasks` says otherwise: the map is
/// preallocated, about 64 bytes an entry (512 KiB here).
pub const DEFAULT_MAX_TASKS: u32 = 8192;
/// `--max-tasks`' bound: about 256 MiB of kernel memory, more threads than the kernel's own
/// default limit (threads-max) on most hosts.
pub const MAX_TASKS_LIMIT: u32 = 4 << 20;

#[derive(Debug, Args)]
#[command(after_help = TRACE_EXAMPLES)]
pub struct TraceArgs {
    /// Attach to running processes (comma-separated pids) instead of starting a command.
    #[arg(long, value_delimiter = ',', value_name = "PID[,PID...]")]
    pub pid: Vec<u32>,
    /// Stop tracing after this many seconds (e.g. 10, 0.5).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<std::time::Duration>,
    /// Print one line every SECS seconds while tracing: bytes copied/s, by reference/s,
    /// transitions/s (on stdout with the table format, on stderr otherwise).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub interval: Option<std::time::Duration>,
    /// An expectation to check; exit status 1 when it does not hold.
    #[arg(long, value_enum)]
    pub expect: Option<Expect>,
    /// Claims to check against the traced program (TOML, as for `run`); needs --strategy.
    #[arg(long, value_name = "FILE", requires = "strategy")]
    pub claims: Option<PathBuf>,
    /// The strategy the traced program implements: the claims about it are judged.
    #[arg(long, value_name = "STRATEGY", value_parser = parse_one_strategy)]
    pub strategy: Option<StrategyList>,
    /// Output format.
    #[arg(
        long,
        value_enum,
        default_value_t = Format::Table,
        default_value_if("json", "true", "json")
    )]
    pub format: Format,
    /// Short for --format json.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Run the command as root even when zc-trace was started through sudo.
    #[arg(long)]
    pub as_root: bool,
    /// Exit with the command's status even when an expectation or claim DIFFERS.
    #[arg(long)]
    pub no_fail: bool,
    /// How many tasks (threads) the kernel side can follow at once. Tasks started beyond it
    /// go uncounted, and the report says how many (it is then incomplete).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_TASKS,
          value_parser = clap::value_parser!(u32).range(16..=MAX_TASKS_LIMIT as i64))]
    pub max_tasks: u32,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

impl TraceArgs {
    /// Combinations clap cannot express; a usage error (exit 2) each.
    pub fn check(&self) -> Result<(), String> {
        json_conflict(self.json, self.format)?;
        match (self.pid.is_empty(), self.command.is_empty()) {
            (true, true) => Err("give a command to trace after `--` (zc-trace trace -- CMD \
                                 ARGS), or --pid PID"
                .into()),
            (false, false) => Err("give either a command after `--` or --pid, not both".into()),
            _ if self.pid.contains(&0) => Err("--pid: 0 is not a process".into()),
            _ => Ok(()),
        }
    }
}

/// -j is --format json: with an explicit --format that is not json it is a contradiction.
/// (clap's `conflicts_with` would also refuse `-j --format json`, which says the same twice;
/// `default_value_if` makes -j alone select json, so any other format here was given.)
fn json_conflict(json: bool, format: Format) -> Result<(), String> {
    if json && format != Format::Json {
        return Err(format!(
            "-j (--format json) contradicts --format {}",
            format
                .to_possible_value()
                .expect("no format is skipped")
                .get_name()
        ));
    }
    Ok(())
}

fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds (e.g. 10 or 0.5)"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("'{text}': give a number of seconds above 0"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn parse_one_strategy(text: &str) -> Result<StrategyList, String> {
    let list = parse_strategies(text)?;
    if list.0.len() != 1 {
        return Err("name one strategy".into());
    }
    Ok(list)
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address and port to listen on, e.g. 0.0.0.0:9000.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: String,
    /// How to consume the data.
    #[arg(long, value_enum, default_value_t = ReceiverMode::Copy)]
    pub mode: ReceiverMode,
    /// Size of the receive buffer passed to read(), e.g. 256K (at most 1G).
    #[arg(long, default_value = "256K", value_parser = parse_buffer)]
    pub buffer: usize,
    /// Exit after this many connections (default: serve until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,
    /// Move this device into a network namespace of its own first and listen there, with
    /// --address: for two ports of one machine cabled to each other, so that the traffic
    /// crosses the wire. At exit (or Ctrl-C, SIGTERM, SIGHUP) it goes back to the namespace
    /// it came from, up again if it was, with its addresses (not its other routes).
    #[arg(long, value_name = "DEV", requires = "address")]
    pub move_device: Option<String>,
    /// The address (IP/PREFIX) the moved device gets, e.g. 10.77.0.2/24.
    #[arg(long, value_name = "IP/PREFIX", requires = "move_device")]
    pub address: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A strategy id or name (default: every strategy).
    pub strategy: Option<String>,
    /// One figure's JSON key, e.g. cpu_copied_bytes (default: every figure, the copy sites and
    /// the claims).
    pub figure: Option<String>,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The --tmpdir the killed runs used.
    #[arg(long, default_value = "/var/tmp")]
    pub tmpdir: PathBuf,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ProbesArgs {
    /// Print the probe report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReceiverArgs {
    /// tcp:ADDR:PORT, unix:PATH or fifo:PATH.
    #[arg(long)]
    pub listen: String,
    #[arg(long, value_enum, default_value_t = ReceiverMode::Copy)]
    pub mode: ReceiverMode,
    /// Size of the receive buffer passed to read().
    #[arg(long, default_value = "256K", value_parser = parse_buffer)]
    pub buffer: usize,
    /// Network namespace to enter first (a /run/netns path).
    #[arg(long)]
    pub netns: Option<PathBuf>,
}

impl ReceiverArgs {
    /// What the receiver process consumes of its flags.
    pub fn serve(&self) -> crate::transfer::receiver::Serve {
        crate::transfer::receiver::Serve {
            listen: self.listen.clone(),
            mode: self.mode,
            buffer: self.buffer,
            netns: self.netns.clone(),
        }
    }
}

/// A parsed --sink: its kind, and HOST:PORT for a remote one.
#[derive(Debug, Clone)]
pub struct SinkArg {
    pub kind: SinkKind,
    pub remote: Option<String>,
}

fn parse_sink(text: &str) -> Result<SinkArg, String> {
    if let Some(addr) = text.strip_prefix("tcp:") {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("--sink {text}: expected tcp:HOST:PORT"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!(
                "--sink {text}: expected tcp:HOST:PORT with a port 1-65535"
            ));
        }
        return Ok(SinkArg {
            kind: SinkKind::Remote,
            remote: Some(addr.to_string()),
        });
    }
    let kind = SinkKind::from_str(text, true).map_err(|_| {
        format!("--sink {text}: expected tcp, unix, pipe, file, null, veth or tcp:HOST:PORT")
    })?;
    Ok(SinkArg { kind, remote: None })
}

impl RunArgs {
    /// The kind of --sink.
    pub fn sink(&self) -> SinkKind {
        self.sink_arg.kind
    }

    /// Combinations clap cannot express; a usage error (exit 2) each.
    pub fn check(&self) -> Result<(), String> {
        json_conflict(self.json, self.format)?;
        if self.no_sg && !matches!(self.sink(), SinkKind::Veth | SinkKind::Remote) {
            return Err(
                "--no-sg needs --sink veth or tcp:HOST:PORT (loopback's scatter-gather \
                        cannot be turned off)"
                    .into(),
            );
        }
        let has_receiver = matches!(
            self.sink(),
            SinkKind::Tcp | SinkKind::Unix | SinkKind::Pipe | SinkKind::Veth
        );
        if self.receiver != ReceiverMode::Copy && !has_receiver {
            return Err(format!(
                "--receiver: the {} sink has no receiver",
                self.sink().cli_name()
            ));
        }
        if self.receiver != ReceiverMode::Copy && self.sink() == SinkKind::Remote {
            return Err("--receiver: a remote sink's receiver is whatever listens there".into());
        }
        if self.receiver == ReceiverMode::Discard && !self.sink().is_tcp() {
            return Err(
                "--receiver discard (MSG_TRUNC) needs a TCP sink (--sink tcp or veth)".into(),
            );
        }
        Ok(())
    }
}

/// The strategies selected with --strategies, in the order given (every one in the standard
/// order where the list names `all`); then the ids the list named more than once, each run
/// once (see `duplicates_warning`).
#[derive(Debug, Clone)]
pub struct StrategyList(
    pub Vec<&'static dyn Strategy>,
    pub Vec<strategies::StrategyId>,
);

impl StrategyList {
    /// The warning line for ids named more than once, if any: they are merged (run once), and
    /// the user is told, since a list naming one twice probably meant something else.
    pub fn duplicates_warning(&self, option: &str) -> Option<String> {
        if self.1.is_empty() {
            return None;
        }
        Some(format!(
            "{option} names {} more than once: each strategy runs once (--iterations N runs \
             each N times)",
            self.1
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// A size: a whole or decimal number with an optional binary unit (B, K, M, G). A decimal
/// must come to a whole number of bytes: 1.5M is 1572864 bytes, 1.3K (1331.2 bytes) is an
/// error that says so.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let not_a_size = || {
        format!(
            "'{text}' is not a size: expected a number with an optional unit, e.g. 4096, 64K, \
             1.5M, 1G"
        )
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return Err(not_a_size());
    }
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use B, K, M or G (binary units)"
            ))
        }
    };
    let too_large = || format!("'{text}' is too large");
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let whole = whole.checked_mul(mult).ok_or_else(too_large)?;
    // The fraction in exact integers: digits / 10^len of the unit. Trailing zeros say nothing;
    // past 24 digits the fraction of a unit (at most 2^30 bytes) is no whole number of bytes.
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        return Ok(whole);
    }
    if fraction.len() > 24 {
        return Err(format!(
            "'{text}' is not a whole number of bytes: give the size in bytes"
        ));
    }
    let scale = 10u128.pow(fraction.len() as u32);
    let digits: u128 = fraction.parse().map_err(|_| not_a_size())?;
    let fraction_bytes = digits * u128::from(mult);
    if fraction_bytes % scale != 0 {
        // The exact number of bytes it comes to, to say what to round to.
        let (q, r) = (fraction_bytes / scale, fraction_bytes % scale);
        let decimals = format!("{r:0width$}", width = fraction.len());
        let bytes = u128::from(whole) + q;
        return Err(format!(
            "'{text}' is {bytes}.{} bytes, not a whole number of bytes: give e.g. {bytes} or {}",
            decimals.trim_end_matches('0'),
            bytes + 1
        ));
    }
    u64::try_from(fraction_bytes / scale)
        .ok()
        .and_then(|f| whole.checked_add(f))
        .ok_or_else(too_large)
}

fn parse_nonzero_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("the payload size must be at least 1 byte".into()),
        n => Ok(n),
    }
}

/// A chunk is one user buffer (read+write) and one pipe fill (splice); 1 GiB bounds the memory
/// a typo can make zc-trace allocate.
pub const MAX_CHUNK: u64 = 1 << 30;

fn parse_chunk(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("the chunk must be at least 1 byte".into()),
        n if n > MAX_CHUNK => Err(format!("the chunk must be at most {MAX_CHUNK} bytes (1G)")),
        n => Ok(n),
    }
}

/// A receive buffer is allocated (and touched) whole before the first byte arrives: bounded
/// like a chunk, so that `--buffer 1P` is an error, not an abort.
fn parse_buffer(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        0 => Err("the buffer must be at least 1 byte".into()),
        n if n > MAX_CHUNK => Err(format!("the buffer must be at most {MAX_CHUNK} bytes (1G)")),
        n => Ok(n as usize),
    }
}

/// A comma-separated list of ids or names; `all`, anywhere in it, is every strategy in the
/// standard order (the other names are still checked, and add nothing).
fn parse_strategies(text: &str) -> Result<StrategyList, String> {
    let mut list: Vec<&'static dyn Strategy> = Vec::new();
    let mut duplicates = Vec::new();
    let mut all = false;
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name.eq_ignore_ascii_case("all") {
            all = true;
            continue;
        }
        let s = strategies::by_name(name).ok_or_else(|| {
            let known: Vec<&str> = strategies::ALL.iter().map(|s| s.id().name()).collect();
            format!(
                "unknown strategy '{name}': known strategies are {}, or all",
                known.join(", ")
            )
        })?;
        if !list.iter().any(|x| x.id() == s.id()) {
            list.push(s);
        } else if !duplicates.contains(&s.id()) {
            duplicates.push(s.id());
        }
    }
    if all {
        list = strategies::ALL.to_vec();
    }
    if list.is_empty() {
        return Err("no strategy given".into());
    }
    Ok(StrategyList(list, duplicates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10B"), Ok(10));
    }

    #[test]
    fn sizes_take_decimals_that_come_to_whole_bytes() {
        assert_eq!(parse_size("1.5M"), Ok(1_572_864));
        assert_eq!(parse_size("1.5m"), Ok(1_572_864));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size("2.25GiB"), Ok(9 << 28));
        assert_eq!(parse_size("1.0"), Ok(1));
        assert_eq!(parse_size("64.000K"), Ok(64 << 10));
        assert_eq!(parse_size("0.0009765625M"), Ok(1 << 10));
        let e = parse_size("1.3K").unwrap_err();
        assert!(
            e.contains("'1.3K' is 1331.2 bytes") && e.contains("not a whole number of bytes"),
            "{e}"
        );
        let e = parse_size("1.5").unwrap_err();
        assert!(e.contains("'1.5' is 1.5 bytes"), "{e}");
        let e = parse_size("0.001K").unwrap_err();
        assert!(e.contains("is 1.024 bytes"), "{e}");
        assert!(parse_size("0.1234567890123456789012345678M")
            .unwrap_err()
            .contains("not a whole number of bytes"));
        for bad in ["1.", ".5M", "1.2.3K", "."] {
            assert!(
                parse_size(bad).unwrap_err().contains("not a size"),
                "{bad}: {:?}",
                parse_size(bad)
            );
        }
        assert!(parse_size("99999999999.5G")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(
            parse_chunk("1.5M").map_err(|e| e.to_string()),
            Ok(1_572_864)
        );
    }

    #[test]
    fn bad_sizes_are_rejected_with_a_reason() {
        assert!(parse_size("").unwrap_err().contains("not a size"));
        assert!(parse_size("M").unwrap_err().contains("not a size"));
        assert!(parse_size("12X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("99999999999G")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_nonzero_size("0")
            .unwrap_err()
            .contains("at least 1 byte"));
        assert!(parse_chunk("0K").unwrap_err().contains("at least 1 byte"));
        assert!(parse_chunk("2G").unwrap_err().contains("at most"));
    }

    /// `receive --buffer 1P` aborted (exit 134) and u64::MAX panicked (exit 101): the buffer
    /// is allocated whole, so it is bounded like a chunk.
    #[test]
    fn receive_buffers_are_bounded() {
        assert_eq!(parse_buffer("64K"), Ok(65536));
        assert_eq!(parse_buffer("1G"), Ok(1 << 30));
        for bad in ["1048576G", "18446744073709551615", "1025M"] {
            assert!(parse_buffer(bad).unwrap_err().contains("at most"), "{bad}");
        }
        assert!(parse_buffer("0").unwrap_err().contains("at least 1 byte"));
        let cli = Cli::try_parse_from([
            "zc-trace",
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--buffer",
            "1P",
        ]);
        assert!(cli.is_err());
    }

    #[test]
    fn strategies_parse_by_id_or_display_name_in_order() {
        let l = parse_strategies("splice, read+write,sendfile,splice").unwrap();
        let ids: Vec<&str> = l.0.iter().map(|s| s.id().name()).collect();
        assert_eq!(ids, ["splice", "read-write", "sendfile"]);
        let all = parse_strategies("all").unwrap();
        assert_eq!(all.0.len(), strategies::ALL.len());
        let e = parse_strategies("read,splice").unwrap_err();
        assert!(
            e.contains("unknown strategy 'read'") && e.contains("mmap-write"),
            "{e}"
        );
        assert!(parse_strategies(",").is_err());
    }

    /// `all` is accepted anywhere in the list, as every strategy in the standard order; an id
    /// named twice runs once, and the user is told so.
    #[test]
    fn all_anywhere_and_duplicates_are_reported() {
        let standard: Vec<&str> = strategies::ALL.iter().map(|s| s.id().name()).collect();
        for text in ["all", "all,sendfile", "splice,all", "sendfile, ALL ,splice"] {
            let l = parse_strategies(text).unwrap();
            let ids: Vec<&str> = l.0.iter().map(|s| s.id().name()).collect();
            assert_eq!(ids, standard, "{text}");
            assert_eq!(l.duplicates_warning("--strategies"), None, "{text}");
        }
        assert!(parse_strategies("all,teleport")
            .unwrap_err()
            .contains("unknown strategy 'teleport'"));
        let l = parse_strategies("sendfile,splice,sendfile,splice,sendfile").unwrap();
        let ids: Vec<&str> = l.0.iter().map(|s| s.id().name()).collect();
        assert_eq!(ids, ["sendfile", "splice"]);
        let w = l.duplicates_warning("--strategies").unwrap();
        assert!(
            w.starts_with("--strategies names sendfile, splice more than once"),
            "{w}"
        );
        assert!(!w.contains('\n'), "{w}");
        let cli = Cli::try_parse_from(["zc-trace", "run", "--strategies", "all,sendfile"]);
        assert!(cli.is_ok(), "{cli:?}");
    }

    #[test]
    fn run_defaults_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["zc-trace", "run"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.size, 64 << 20);
        assert_eq!(a.chunk, 128 << 10);
        assert_eq!(a.iterations, 1);
        assert_eq!(a.format, Format::Table);
        assert!(!a.cold && a.file.is_none());
        assert_eq!(a.strategies.0.len(), strategies::ALL.len());
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for args in [
            &["zc-trace", "run", "--size", "0"][..],
            &["zc-trace", "run", "--chunk", "0"],
            &["zc-trace", "run", "--strategies", "nope"],
            &["zc-trace", "run", "--iterations", "0"],
            &["zc-trace", "run", "--format", "xml"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn j_is_format_json_and_contradicts_another_format() {
        let run = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["zc-trace", "run"][..], args].concat()).unwrap();
            let Command::Run(a) = cli.command else {
                panic!("not run")
            };
            (a.format, a.check())
        };
        assert_eq!(run(&["-j"]), (Format::Json, Ok(())));
        assert_eq!(run(&["--json"]), (Format::Json, Ok(())));
        assert_eq!(run(&["-j", "--format", "json"]), (Format::Json, Ok(())));
        assert_eq!(run(&[]), (Format::Table, Ok(())));
        assert_eq!(run(&["--format", "csv"]), (Format::Csv, Ok(())));
        let (_, e) = run(&["-j", "--format", "csv"]);
        assert_eq!(e, Err("-j (--format json) contradicts --format csv".into()));
        let (_, e) = run(&["--format", "table", "-j"]);
        assert!(e.unwrap_err().contains("--format table"));
        let trace = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["zc-trace", "trace"][..], args].concat()).unwrap();
            let Command::Trace(a) = cli.command else {
                panic!("not trace")
            };
            (a.format, a.check())
        };
        assert_eq!(trace(&["-j", "--", "true"]), (Format::Json, Ok(())));
        assert!(trace(&["-j", "--format", "markdown", "--", "true"])
            .1
            .is_err());
    }

    #[test]
    fn completions_and_man_are_subcommands() {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let cli = Cli::try_parse_from(["zc-trace", "completions", shell]).unwrap();
            assert!(matches!(cli.command, Command::Completions(_)), "{shell}");
        }
        assert!(Cli::try_parse_from(["zc-trace", "completions", "tcsh"]).is_err());
        let cli = Cli::try_parse_from(["zc-trace", "man"]).unwrap();
        assert!(matches!(cli.command, Command::Man));
    }

    #[test]
    fn help_shows_examples() {
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("Examples:") && help.contains("zc-trace run --size"),
            "{help}"
        );
    }
}
