//! Typed errors, one enum per concern, and the exit status each maps to.

use std::path::PathBuf;

use thiserror::Error;

/// The host cannot run zc-trace as it is (exit status 3).
#[derive(Debug, Error)]
pub enum EnvError {
    #[error(
        "missing {missing}: zc-trace loads eBPF programs and needs root, or CAP_BPF and CAP_PERFMON \
         (with CAP_DAC_READ_SEARCH where tracefs is root-only: `zc-trace doctor` tells); \
         run it as root, e.g. `sudo zc-trace run`"
    )]
    Privileges { missing: String },
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({reason}); \
         mount it with `mount -t tracefs tracefs /sys/kernel/tracing` and run zc-trace again"
    )]
    Tracefs { reason: String },
    #[error(
        "tracefs is mounted at {path} with mode {mode}, and this process cannot read it \
         (zc-trace reads tracepoint formats and ids there); run zc-trace as root, or give it \
         CAP_DAC_READ_SEARCH as well"
    )]
    TracefsUnreadable { path: PathBuf, mode: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the kernel refused the eBPF object: {0}")]
    Load(String),
    #[error(
        "this kernel charges eBPF maps to the locked-memory limit (RLIMIT_MEMLOCK, before \
         5.11), which is {limit}, and zc-trace could not raise it ({why}); the kernel refused \
         the eBPF object: {load}; raise the limit first (`ulimit -l unlimited` as root, or \
         LimitMEMLOCK=infinity in a systemd unit) or give zc-trace CAP_SYS_RESOURCE"
    )]
    Memlock {
        limit: crate::kernel::memlock::Limit,
        why: String,
        load: String,
    },
    #[error(
        "kernel {release} is older than {oldest}, the oldest kernel zc-trace supports; run it on \
         {oldest} or newer"
    )]
    KernelTooOld { release: String, oldest: String },
    #[error("veth sink: {0}")]
    Netns(String),
    #[error(
        "zc-trace runs in a PID namespace of its own (a container): the pids it sees are not \
         the kernel's, so it can neither tell the kernel which tasks to trace nor tell a live \
         run's leftovers from a dead one's; run it in the host's PID namespace"
    )]
    PidNamespace,
    #[error("required hook {hook} could not be attached by any method: {tried}")]
    RequiredHook { hook: String, tried: String },
}

/// The user asked for something that cannot be done (exit status 2).
#[derive(Debug, Error)]
pub enum InputError {
    #[error("--file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("--claims {path}: {reason}")]
    Claims { path: PathBuf, reason: String },
    #[error("--tmpdir {path}: {reason}")]
    TmpDir { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
}

/// A measurement went wrong (exit status 4).
#[derive(Debug, Error)]
pub enum RunError {
    #[error("{strategy}: {what}: {source}")]
    Io {
        strategy: String,
        what: String,
        source: std::io::Error,
    },
    #[error("receiver: {0}")]
    Receiver(String),
    #[error("{strategy}: {message}")]
    Check { strategy: String, message: String },
    #[error("reading eBPF maps: {0}")]
    Maps(String),
}

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("writing the report: {0}")]
    Output(std::io::Error),
    /// `trace -- CMD`: the command cannot be started (126: found but cannot be executed,
    /// 127: not found, as shells and `env` say).
    #[error("{message}")]
    Command { message: String, code: u8 },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) => 2,
            Error::Env(_) => 3,
            Error::Run(_) | Error::Output(_) => 4,
            Error::Command { code, .. } => *code,
        }
    }
}
