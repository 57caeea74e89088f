//! What the subcommands that load eBPF programs set up before they do, written once and in one
//! order: root checked, the host's facts read (a kernel older than zc-trace supports refused),
//! then (for the subcommands that run something: `run`, `trace`) the runtime and the signal
//! handlers, and only then tracefs, so that a signal during the mount or anything after it
//! finds a handler and the cleanup runs. `probes` and
//! `explain` attach the plan once and detach it, and so does `doctor` once it has found the
//! privileges enough; `run --untraced` (nothing loaded) shares the signal handling.

use std::path::PathBuf;

use crate::error::Error;
use crate::kernel::capabilities::{self, HostFacts};
use crate::kernel::probes::AttachReport;
use crate::kernel::tracefs;
use crate::resources::cleanup;

/// Root checked, the host's facts, and tracefs (a mount made here is undone by cleanup).
pub struct Session {
    pub host: HostFacts,
    pub tracefs: PathBuf,
}

/// A [`Session`] for a subcommand that runs something: its runtime, and the signal handlers
/// installed before tracefs was mounted.
pub struct Interruptible {
    pub session: Session,
    pub runtime: tokio::runtime::Runtime,
    pub signals: Signals,
}

impl Session {
    /// For `probes` and `explain`: nothing they start outlives them but a tracefs mount.
    pub fn open() -> Result<Session, Error> {
        capabilities::check_privileges()?;
        let host = HostFacts::detect();
        capabilities::check_kernel(&host.kernel)?;
        let tracefs = tracefs::ensure_mounted()?;
        Ok(Session { host, tracefs })
    }

    /// For `doctor`, which checks the privileges itself (to report what is missing, not to
    /// refuse) and has read the host's facts already.
    pub fn open_checked(host: HostFacts) -> Result<Session, Error> {
        let tracefs = tracefs::ensure_mounted()?;
        Ok(Session { host, tracefs })
    }

    /// For `run` and `trace`: `prepare` runs once root is known (run's sweep of what a killed
    /// run left, trace's check of its own namespace), the host's BTF note goes to stderr, and
    /// the signal handlers come before the tracefs mount.
    pub fn open_interruptible(
        prepare: impl FnOnce() -> Result<(), Error>,
    ) -> Result<Interruptible, Error> {
        capabilities::check_privileges()?;
        prepare()?;
        let host = HostFacts::detect();
        capabilities::check_kernel(&host.kernel)?;
        if let Some(note) = &host.btf_note {
            eprintln!("zc-trace: note: {note}");
        }
        let runtime = crate::kernel::tracer::runtime()?;
        let signals = {
            let _context = runtime.enter();
            Signals::register()
        };
        let tracefs = tracefs::ensure_mounted()?;
        Ok(Interruptible {
            session: Session { host, tracefs },
            runtime,
            signals,
        })
    }

    /// Loads the programs, attaches the whole plan as `run` does and detaches it: what each
    /// hook attached with on this kernel, or why not.
    pub fn attach_plan(&self) -> Result<AttachReport, Error> {
        let report = crate::kernel::tracer::attach_plan(&self.host, &self.tracefs);
        cleanup::run_all();
        Ok(report?)
    }
}

/// A signal arrived: undo what is registered for cleanup, say so (`undone`: what that was),
/// exit 130.
pub fn interrupted(sig: &str, undone: &str) -> ! {
    cleanup::run_all();
    eprintln!("zc-trace: interrupted by {sig}; {undone}");
    std::process::exit(130);
}

/// SIGINT, SIGTERM and SIGHUP, caught from the moment they are registered.
pub struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

/// si_code of the last SIGINT (SI_KERNEL when a terminal sent it).
static LAST_SIGINT_CODE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

impl Signals {
    /// Installs the handlers (inside a runtime context).
    pub fn register() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        // SAFETY: the action only stores an integer (async-signal-safe). tokio's handler for
        // the same signal is registered in the same registry and runs too.
        let _ = unsafe {
            signal_hook_registry::register_sigaction(nix::libc::SIGINT, |info| {
                LAST_SIGINT_CODE.store(info.si_code, std::sync::atomic::Ordering::Relaxed)
            })
        };
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(int), Ok(term), Ok(hup)) => Signals(Some((int, term, hup))),
            _ => Signals(None),
        }
    }

    /// Whether the last SIGINT came from a terminal (its line discipline sends it to the
    /// whole foreground process group, with si_code SI_KERNEL), not from kill(2).
    pub fn sigint_from_terminal() -> bool {
        LAST_SIGINT_CODE.load(std::sync::atomic::Ordering::Relaxed) == nix::libc::SI_KERNEL
    }

    /// The first of them to arrive (or one that arrived since `register`).
    pub async fn recv(&mut self) -> &'static str {
        let Some((int, term, hup)) = &mut self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        }
    }
}
