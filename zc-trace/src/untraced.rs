//! `zc-trace run --untraced` (hidden, for `cargo xtask bench`): the transfers of `run` with no
//! eBPF program loaded or attached, each timed from user space. Set against a traced run, it
//! gives what the probes cost the very transfer they measure.
//!
//! It is its own module rather than a switch threaded through `runner`, so that the traced path
//! (tracer, window markers, counter deltas) stays exactly as it is. What the two must share to
//! be comparable is shared: the payload, the sinks and their receiver processes, each
//! strategy's prepare/run/finish on a dedicated sender thread, the interleaving of strategies
//! over iterations and the byte checks. The clock is CLOCK_MONOTONIC, the clock the traced
//! window's bpf_ktime_get_ns() reads.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::ExitCode;
use std::time::Instant;

use crate::capabilities::HostFacts;
use crate::cleanup;
use crate::cli::RunArgs;
use crate::error::{Error, InputError, RunError};
use crate::payload::{SourceFile, DEFAULT_SEED};
use crate::report::{self, RunConfig, SkippedStrategy, UntracedSample};
use crate::sink::{Sink, SinkKind, SinkOptions};
use crate::strategies::{Strategy, TransferContext};

/// The receiver's read() buffer, as in a traced run.
const RECEIVE_BUFFER: usize = 256 * 1024;

pub fn main(args: RunArgs) -> Result<ExitCode, Error> {
    args.check().map_err(InputError::Usage)?;
    let user_file = args.file.as_deref().map(SourceFile::open).transpose()?;
    let host = HostFacts::detect();
    // Signals as in a traced run (the bench stops a long one with SIGTERM): the receiver and
    // temporary files go, and the exit status is 130.
    let runtime = crate::tracer::runtime()?;
    let result = runtime.block_on(async move {
        let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
        let work = async move {
            let source = match user_file {
                Some(f) => f,
                None => {
                    SourceFile::ensure_free_space(&args.tmpdir, args.size, "the payload")?;
                    let (dir, size) = (args.tmpdir.clone(), args.size);
                    tokio::task::spawn_blocking(move || {
                        SourceFile::generate(&dir, size, DEFAULT_SEED)
                    })
                    .await
                    .map_err(|e| RunError::Receiver(format!("generating the payload: {e}")))??
                }
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("zc-trace-sender".into())
                .spawn(move || {
                    let _ = tx.send(measure(host, source, &args));
                })
                .map_err(|e| RunError::Receiver(format!("cannot start the sender thread: {e}")))?;
            rx.await
                .unwrap_or_else(|_| Err(RunError::Receiver("the sender thread died".into()).into()))
        };
        tokio::select! {
            r = work => r,
            _ = int.recv() => interrupted("SIGINT"),
            _ = term.recv() => interrupted("SIGTERM"),
            _ = hup.recv() => interrupted("SIGHUP"),
        }
    });
    cleanup::run_all();
    print(&result?)?;
    Ok(ExitCode::SUCCESS)
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| RunError::Receiver(format!("cannot catch signals: {e}")).into())
}

fn interrupted(sig: &str) -> ! {
    cleanup::run_all();
    eprintln!("zc-trace: interrupted by {sig}; receiver stopped, temporary files removed");
    std::process::exit(130);
}

/// Writes the report; a reader that stopped reading (`| head`) is not an error.
fn print(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(Error::Output),
    }
}

/// On the sender thread, as in a traced run: sinks, then every strategy once per iteration,
/// interleaved. Returns the rendered report.
fn measure(host: HostFacts, source: SourceFile, args: &RunArgs) -> Result<String, Error> {
    let mut skipped = Vec::new();
    let mut strategies: Vec<&'static dyn Strategy> = Vec::new();
    for s in args.strategies.0.iter().copied() {
        match s.unsupported(s.fixed_sink().unwrap_or(args.sink)) {
            Some(reason) => skipped.push(SkippedStrategy {
                strategy: s.id(),
                reason,
            }),
            None => strategies.push(s),
        }
    }
    let mut sinks: Vec<Sink> = Vec::new();
    for s in &strategies {
        let kind = s.fixed_sink().unwrap_or(args.sink);
        if !sinks.iter().any(|k| k.kind == kind) {
            sinks.push(Sink::start(&SinkOptions {
                kind,
                no_sg: args.no_sg,
                mode: args.receiver,
                tmpdir: args.tmpdir.clone(),
                buffer: RECEIVE_BUFFER,
            })?);
        }
    }
    let mut samples: Vec<Vec<UntracedSample>> = strategies.iter().map(|_| Vec::new()).collect();
    let mut unsupported: Vec<Option<String>> = strategies.iter().map(|_| None).collect();
    for _ in 0..args.iterations {
        for (i, s) in strategies.iter().enumerate() {
            if unsupported[i].is_some() {
                continue;
            }
            let kind = s.fixed_sink().unwrap_or(args.sink);
            let sink = sinks
                .iter_mut()
                .find(|k| k.kind == kind)
                .expect("every needed sink was started");
            match run_once(sink, &source, *s, args) {
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
    if samples.iter().all(Vec::is_empty) {
        return Err(InputError::Usage(format!(
            "every selected strategy was skipped on this host: {}",
            skipped
                .iter()
                .map(|s| format!("{}: {}", s.strategy, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
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
    let runs: Vec<(&'static dyn Strategy, SinkKind, Vec<UntracedSample>)> = strategies
        .into_iter()
        .zip(samples)
        .filter(|(_, samples)| !samples.is_empty())
        .map(|(s, samples)| (s, s.fixed_sink().unwrap_or(args.sink), samples))
        .collect();
    let report = report::untraced(host, config, runs);
    drop(sinks);
    Ok(report::render(&report, args.format))
}

/// One transfer, as `runner::run_once` makes it, timed around `Transfer::run` alone (the traced
/// window holds the same calls, between its two markers).
fn run_once(
    sink: &mut Sink,
    source: &SourceFile,
    strategy: &dyn Strategy,
    args: &RunArgs,
) -> Result<UntracedSample, RunError> {
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
    // SAFETY: as in `runner::run_once`: the transfer that holds this borrow is dropped before
    // `out` goes back to the sink, on every path.
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
            let _ = sink.finish(out);
            return Err(io("preparing")(e));
        }
    };
    let start = Instant::now();
    let moved = transfer.run();
    let window_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    if moved.is_ok() {
        transfer
            .finish()
            .map_err(io("collecting the kernel's completion reports"))?;
    }
    drop(transfer);
    let moved = moved.map_err(io("transferring"))?;
    let finished = sink.finish(out)?;
    let received = finished.received;
    if moved != source.len || received.is_some_and(|r| r != source.len) {
        return Err(RunError::Check {
            strategy: strategy.name().into(),
            message: format!(
                "moved {moved} bytes and {} arrived at the sink, expected {}",
                received.map_or("an unknown number".into(), |r| r.to_string()),
                source.len
            ),
        });
    }
    Ok(UntracedSample {
        window_ns,
        bytes: moved,
    })
}
