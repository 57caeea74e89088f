//! `zc-trace run`: checks the host, loads the probes, starts the receiver, runs each strategy
//! inside a measured window on a dedicated thread, and renders the report. Ctrl-C (or SIGTERM,
//! SIGHUP) at any moment stops the receiver, removes temporary files and exits; the probes are
//! detached by the kernel when the process's descriptors close.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::ExitCode;

use zc_trace_common::{role, MARK_START, MARK_STOP};

use crate::capabilities::{self, HostFacts};
use crate::claims::{self, Claims, RunFacts};
use crate::cleanup;
use crate::cli::RunArgs;
use crate::error::{Error, InputError, RunError};
use crate::payload::{SourceFile, DEFAULT_SEED};
use crate::report::{self, Report, RoleSample, RunConfig, Sample, SkippedStrategy};
use crate::sink::{Sink, SinkOptions};
use crate::strategies::{Strategy, TransferContext};
use crate::tracefs;
use crate::tracer::Tracer;

/// The receiver's read() buffer.
const RECEIVE_BUFFER: usize = 256 * 1024;

pub fn main(args: RunArgs) -> Result<ExitCode, Error> {
    // Bad input first (exit 2), then the environment (exit 3), then the expensive parts.
    args.check().map_err(InputError::Usage)?;
    let user_file = args.file.as_deref().map(SourceFile::open).transpose()?;
    let claims = match &args.claims {
        Some(path) => Claims::load(path)?,
        None => Claims::seed(),
    };
    let args_claims = args.claims.clone();
    capabilities::check_privileges()?;
    // What runs killed with SIGKILL left (their namespace names could collide with ours).
    crate::leftovers::sweep_before_run(&args.tmpdir);
    let host = HostFacts::detect();
    if let Some(note) = &host.btf_note {
        eprintln!("zc-trace: note: {note}");
    }
    // The signal handlers come before anything that needs cleaning up (mounting tracefs, the
    // payload, the eBPF load): a signal during those used to kill zc-trace with tracefs still
    // mounted. From here on a signal waits in the handler until the select below acts on it.
    let runtime = crate::tracer::runtime()?;
    let mut signals = {
        let _context = runtime.enter();
        Signals::register()
    };
    let tracefs = tracefs::ensure_mounted()?;

    let first_signals = &mut signals;
    let result = runtime.block_on(async move {
        let work = async move {
            // Room for the generated payload, and for one copy of it where a strategy or the
            // sink writes a file in --tmpdir (each run replaces the last one's).
            let writes_file = args.sink == crate::sink::SinkKind::File
                || args
                    .strategies
                    .0
                    .iter()
                    .any(|s| s.fixed_sink() == Some(crate::sink::SinkKind::File));
            let len = user_file.as_ref().map_or(args.size, |f| f.len);
            let needed = u64::from(user_file.is_none()) * len + u64::from(writes_file) * len;
            if needed > 0 {
                SourceFile::ensure_free_space(
                    &args.tmpdir,
                    needed,
                    "the payload and the file a strategy writes",
                )?;
            }
            let source = match user_file {
                Some(f) => f,
                // Off the runtime's thread, so that a signal is acted on while it writes.
                None => {
                    let (dir, size) = (args.tmpdir.clone(), args.size);
                    tokio::task::spawn_blocking(move || {
                        SourceFile::generate(&dir, size, DEFAULT_SEED)
                    })
                    .await
                    .map_err(|e| RunError::Receiver(format!("generating the payload: {e}")))??
                }
            };
            // aya-log's reader is a task on this runtime, so the tracer is made inside it.
            let tracer = Tracer::load(&host, &tracefs)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("zc-trace-sender".into())
                .spawn(move || {
                    let _ = tx.send(measure(tracer, host, source, &args));
                })
                .map_err(|e| RunError::Receiver(format!("cannot start the sender thread: {e}")))?;
            rx.await
                .unwrap_or_else(|_| Err(RunError::Receiver("the sender thread died".into()).into()))
        };
        tokio::select! {
            r = work => r,
            sig = first_signals.recv() => interrupted(sig),
        }
    });
    cleanup::run_all();
    let (mut report, format, no_fail) = result?;
    let verdicts = claims::judge(
        &claims,
        &report,
        &RunFacts {
            sink_has_sg: report.config.sink_scatter_gather,
            sink: report.config.sink_description.clone(),
            cold: report.config.cold,
        },
    );
    // Claims the user gave that this run graded none of: a lab grading by exit status must not
    // read that as "all held".
    if let (Some(path), true) = (&args_claims, verdicts.verdicts.is_empty()) {
        return Err(InputError::Claims {
            path: path.clone(),
            reason: format!(
                "none of its {} claims is about a strategy this run measured ({}); select their \
                 strategies with --strategies",
                claims.claims.len(),
                report
                    .strategies
                    .iter()
                    .map(|s| s.id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        .into());
    }
    let differs = verdicts.any_differs();
    report.claims = Some(verdicts);
    // On a thread of its own, so that a signal still ends zc-trace while the write blocks on
    // a reader that does not read (it used to be ignored until the reader drained the pipe).
    let written = runtime.block_on(async {
        let write = tokio::task::spawn_blocking(move || {
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            report::write(&report, format, &mut stdout).and_then(|()| stdout.flush())
        });
        tokio::select! {
            r = write => r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            sig = signals.recv() => interrupted(sig),
        }
    });
    match written {
        // A reader that stopped reading (`| head`) is not an error: the status stays the run's.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.map_err(Error::Output)?,
    }
    Ok(if differs && !no_fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A signal arrived: undo what is registered for cleanup, say so, exit 130.
fn interrupted(sig: &str) -> ! {
    cleanup::run_all();
    eprintln!(
        "zc-trace: interrupted by {sig}; probes detached, receiver stopped, temporary files removed"
    );
    std::process::exit(130);
}

/// SIGINT, SIGTERM and SIGHUP, caught from the moment they are registered.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    /// Installs the handlers (inside a runtime context).
    fn register() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(int), Ok(term), Ok(hup)) => Signals(Some((int, term, hup))),
            _ => Signals(None),
        }
    }

    /// The first of them to arrive (or one that arrived since `register`).
    async fn recv(&mut self) -> &'static str {
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

/// "odirect: reason; tee: reason" for an error message.
fn reasons(skipped: &[SkippedStrategy]) -> String {
    skipped
        .iter()
        .map(|s| format!("{}: {}", s.strategy, s.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs on the sender thread: everything it does inside a window is what gets counted.
fn measure(
    mut tracer: Tracer,
    host: HostFacts,
    source: SourceFile,
    args: &RunArgs,
) -> Result<(Report, crate::cli::Format, bool), Error> {
    let tid = nix::unistd::gettid().as_raw() as u32;
    let options = |kind| SinkOptions {
        kind,
        no_sg: args.no_sg,
        mode: args.receiver,
        tmpdir: args.tmpdir.clone(),
        buffer: RECEIVE_BUFFER,
    };
    // Strategies that cannot use the chosen sink are left out, and the report says why.
    let mut skipped = Vec::new();
    let mut strategies: Vec<&'static dyn Strategy> = Vec::new();
    for s in args.strategies.0.iter().copied() {
        let kind = s.fixed_sink().unwrap_or(args.sink);
        match s.unsupported(kind) {
            Some(reason) => skipped.push(SkippedStrategy {
                strategy: s.id(),
                reason,
            }),
            None => strategies.push(s),
        }
    }
    if strategies.is_empty() {
        return Err(InputError::Usage(format!(
            "no selected strategy can run with --sink {}: {}",
            args.sink.cli_name(),
            reasons(&skipped)
        ))
        .into());
    }
    let mut sinks: Vec<Sink> = Vec::new();
    for kind in strategies
        .iter()
        .map(|s| s.fixed_sink().unwrap_or(args.sink))
    {
        if !sinks.iter().any(|k| k.kind == kind) {
            let sink = Sink::start(&options(kind))?;
            if let Some(pid) = sink.receiver_pid() {
                tracer.track(pid, role::RECEIVER)?;
            }
            sinks.push(sink);
        }
    }
    let mut samples: Vec<Vec<Sample>> = strategies.iter().map(|_| Vec::new()).collect();
    // Interleave strategies across iterations so slow drifts (page cache, CPU frequency) spread
    // over all of them instead of biasing one.
    // A strategy the host cannot run (O_DIRECT on tmpfs...) says so when it prepares; it is
    // left out with its reason rather than failing the whole run.
    let mut unsupported: Vec<Option<String>> = strategies.iter().map(|_| None).collect();
    for _ in 0..args.iterations {
        for (i, s) in strategies.iter().enumerate() {
            if unsupported[i].is_some() {
                continue;
            }
            log::info!("running {}", s.name());
            let kind = s.fixed_sink().unwrap_or(args.sink);
            let sink = sinks
                .iter_mut()
                .find(|k| k.kind == kind)
                .expect("every needed sink was started");
            match run_once(&mut tracer, sink, &source, *s, args, tid) {
                Ok(sample) => samples[i].push(sample),
                Err(RunError::Io {
                    what, source: e, ..
                }) if what == "preparing" && e.kind() == std::io::ErrorKind::Unsupported => {
                    unsupported[i] = Some(e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    for (s, why) in strategies.iter().zip(&unsupported) {
        if let Some(reason) = why {
            skipped.push(SkippedStrategy {
                strategy: s.id(),
                reason: reason.clone(),
            });
        }
    }
    // A report with no strategy in it must not read as a success.
    if unsupported.iter().all(Option::is_some) {
        return Err(InputError::Usage(format!(
            "every selected strategy was skipped on this host: {}",
            reasons(&skipped)
        ))
        .into());
    }
    let main_sink = sinks
        .iter()
        .find(|k| k.kind == args.sink)
        .unwrap_or(&sinks[0]);
    let config = RunConfig {
        payload_bytes: source.len,
        chunk_bytes: args.chunk,
        iterations: args.iterations,
        cold: args.cold,
        source: source.origin.clone(),
        source_fs: source.fs_type.clone(),
        sink: main_sink.kind,
        sink_description: main_sink.description.clone(),
        sink_scatter_gather: main_sink.sg,
        receiver: main_sink.receiver_description.clone(),
        skipped,
    };
    let sink_of = |s: &dyn Strategy| {
        let kind = s.fixed_sink().unwrap_or(args.sink);
        let sink = sinks.iter().find(|k| k.kind == kind).expect("started");
        (kind, sink.receiver_pid().is_some())
    };
    let runs = strategies
        .into_iter()
        .zip(samples)
        .filter(|(_, samples)| !samples.is_empty())
        .map(|(s, samples)| {
            let (kind, has_receiver) = sink_of(s);
            (s, kind, has_receiver, samples)
        })
        .collect();
    let report = report::build(host, config, tracer.attach_report(), runs);
    drop(sinks);
    drop(tracer);
    Ok((report, args.format, args.no_fail))
}

fn run_once(
    tracer: &mut Tracer,
    sink: &mut Sink,
    source: &SourceFile,
    strategy: &dyn Strategy,
    args: &RunArgs,
    tid: u32,
) -> Result<Sample, RunError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| RunError::Io {
            strategy: strategy.name().into(),
            what,
            source,
        }
    };
    if args.cold {
        source
            .evict_from_page_cache()
            .map_err(io("evicting the source from the page cache"))?;
    }
    let out = sink.open().map_err(io("opening the sink"))?;
    // SAFETY: `out` outlives every use of this borrow: the transfer that holds it is dropped
    // before `out` goes back to the sink, on the error path and on the normal one. (A tied
    // lifetime would not let `out` be handed back when `prepare` fails.)
    let borrowed = unsafe { BorrowedFd::borrow_raw(out.fd.as_raw_fd()) };
    let prepared = strategy.prepare(TransferContext {
        source,
        sink: borrowed,
        sink_kind: sink.kind,
        chunk: usize::try_from(args.chunk).unwrap_or(usize::MAX),
    });
    let mut transfer = match prepared {
        Ok(t) => t,
        Err(e) => {
            // Close this run's connection properly, or its receiver's "done 0" would be taken
            // for the next strategy's result.
            let _ = sink.finish(out);
            return Err(io("preparing")(e));
        }
    };
    let sender_before = tracer.snapshot(role::SENDER)?;
    let receiver_before = tracer.snapshot(role::RECEIVER)?;
    let windows_before = tracer.task(tid).map_or(0, |t| t.windows);

    mark(MARK_START);
    let moved = transfer.run();
    mark(MARK_STOP);

    // Outside the window: what the kernel reports back afterwards (zero-copy completions).
    let zerocopy = match &moved {
        Ok(_) => transfer
            .finish()
            .map_err(io("collecting the kernel's completion reports"))?,
        Err(_) => None,
    };
    drop(transfer);
    let moved = moved.map_err(io("transferring"))?;
    let finished = sink.finish(out)?;
    let received = finished.received;
    let sender_after = tracer.snapshot(role::SENDER)?;
    let receiver_after = tracer.snapshot(role::RECEIVER)?;
    tracer.forget_sockets()?;

    let check = |message: String| RunError::Check {
        strategy: strategy.name().into(),
        message,
    };
    let task = tracer
        .task(tid)
        .filter(|t| t.windows == windows_before + 1 && t.window_end_ns >= t.window_start_ns)
        .ok_or_else(|| {
            check(
                "the measured window was not seen by the eBPF program at raw_syscalls:sys_enter"
                    .into(),
            )
        })?;
    if moved != source.len || received.is_some_and(|r| r != source.len) {
        return Err(check(format!(
            "moved {moved} bytes and {} arrived at the sink, expected {}",
            received.map_or("an unknown number".into(), |r| r.to_string()),
            source.len
        )));
    }
    Ok(Sample {
        sender: RoleSample::delta(&sender_after, &sender_before),
        receiver: RoleSample::delta(&receiver_after, &receiver_before),
        window_ns: task.window_end_ns - task.window_start_ns,
        bytes: moved,
        zerocopy,
        retransmitted: finished.retransmitted,
    })
}

/// Opens or closes the measured window: see `zc_trace_common::MARK_START`.
fn mark(marker: u64) {
    // SAFETY: close() on a descriptor number zc-trace never holds fails with EBADF and has
    // no other effect.
    let _ = unsafe { nix::libc::close(marker as i32) };
}
