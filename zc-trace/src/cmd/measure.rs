//! The measured transfers, whatever measures them: which strategies run (and which are left
//! out, with why), the sinks and their receiver processes, every strategy once per iteration,
//! interleaved, and each transfer's prepare / run / finish with its byte checks. A `Meter`
//! says what is taken around each transfer: the probes' counters (`run`) or the clock alone
//! (`run --untraced`, the bench's baseline). Sharing this is what makes the two comparable.

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::cli::RunArgs;
use crate::error::{Error, InputError, RunError};
use crate::report::{RunConfig, SkippedStrategy};
use crate::transfer::payload::SourceFile;
use crate::transfer::sink::{Finished, Sink, SinkKind, SinkOptions};
use crate::transfer::strategies::{Strategy, Transfer, TransferContext, ZerocopyReport};

/// The receiver's read() buffer.
const RECEIVE_BUFFER: usize = 256 * 1024;

/// What is taken around each transfer.
pub trait Meter {
    type Sample;
    /// What `start` hands to `sample`.
    type Mark;

    /// A receiver process was started (its work is counted apart).
    fn receiver_started(&mut self, pid: u32) -> Result<(), RunError>;

    /// The sink's frames leave through device `ifindex`, which reads them by DMA.
    fn dma_device(&mut self, ifindex: u32) -> Result<(), RunError>;

    /// Runs `run`, the transfer itself, inside the measured window.
    fn window(
        &mut self,
        run: &mut dyn FnMut() -> std::io::Result<u64>,
    ) -> Result<(std::io::Result<u64>, Self::Mark), RunError>;

    /// After the transfer, its completion reports and the sink's end: `strategy`'s sample.
    fn sample(
        &mut self,
        strategy: &str,
        mark: Self::Mark,
        moved: u64,
        finished: Finished,
        zerocopy: Option<ZerocopyReport>,
    ) -> Result<Self::Sample, RunError>;
}

/// What the strategies produced, with what the report says about the run.
pub struct Measured<S> {
    pub config: RunConfig,
    /// Each strategy that ran: its sink, whether that sink has a receiver, its samples.
    pub runs: Vec<(&'static dyn Strategy, SinkKind, bool, Vec<S>)>,
}

/// Runs on the sender thread: sinks, then every strategy once per iteration, interleaved.
pub fn measure<M: Meter>(
    meter: &mut M,
    source: &SourceFile,
    args: &RunArgs,
) -> Result<Measured<M::Sample>, Error> {
    // Strategies that cannot use the chosen sink are left out, and the report says why.
    let mut skipped = Vec::new();
    let mut strategies: Vec<&'static dyn Strategy> = Vec::new();
    for s in args.strategies.0.iter().copied() {
        match s.unsupported(sink_of(s, args)) {
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
            args.sink().cli_name(),
            reasons(&skipped)
        ))
        .into());
    }
    let mut sinks: Vec<Sink> = Vec::new();
    for kind in strategies.iter().map(|s| sink_of(*s, args)) {
        if !sinks.iter().any(|k| k.kind == kind) {
            let sink = Sink::start(&SinkOptions {
                kind,
                remote: args.sink_arg.remote.clone().filter(|_| kind == args.sink()),
                force: args.force,
                no_sg: args.no_sg,
                mode: args.receiver,
                tmpdir: args.tmpdir.clone(),
                buffer: RECEIVE_BUFFER,
            })?;
            if let Some(pid) = sink.receiver_pid() {
                meter.receiver_started(pid)?;
            }
            if let Some(d) = sink.device.as_ref().filter(|d| d.dma()) {
                meter.dma_device(d.index)?;
            }
            sinks.push(sink);
        }
    }
    let mut samples: Vec<Vec<M::Sample>> = strategies.iter().map(|_| Vec::new()).collect();
    // Interleave strategies across iterations so slow drifts (page cache, CPU frequency) spread
    // over all of them instead of biasing one.
    // A strategy the host cannot run (O_DIRECT on tmpfs...) says so when it prepares; it is
    // left out with its reason rather than failing the whole run.
    let mut unsupported: Vec<Option<String>> = strategies.iter().map(|_| None).collect();
    let progress = crate::ui::progress::Progress::steps(
        args.quiet,
        strategies.len() as u64 * u64::from(args.iterations),
    );
    for iteration in 0..args.iterations {
        for (i, s) in strategies.iter().enumerate() {
            if unsupported[i].is_some() {
                continue;
            }
            log::info!("running {}", s.name());
            // Drawn here, before the transfer's window opens.
            progress.step(format!(
                "[{}/{}] {}, iteration {}/{}",
                i + 1,
                strategies.len(),
                s.name(),
                iteration + 1,
                args.iterations
            ));
            let kind = sink_of(*s, args);
            let sink = sinks
                .iter_mut()
                .find(|k| k.kind == kind)
                .expect("every needed sink was started");
            match transfer_once(meter, sink, source, *s, args) {
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
    progress.finish();
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
        .find(|k| k.kind == args.sink())
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
        sink_device: main_sink.device_report(),
        skipped,
    };
    let runs = strategies
        .into_iter()
        .zip(samples)
        .filter(|(_, samples)| !samples.is_empty())
        .map(|(s, samples)| {
            let kind = sink_of(s, args);
            let sink = sinks.iter().find(|k| k.kind == kind).expect("started");
            (s, kind, sink.receiver_pid().is_some(), samples)
        })
        .collect();
    Ok(Measured { config, runs })
}

/// The sink a strategy writes to: its own (the file -> file ones) or --sink.
fn sink_of(s: &dyn Strategy, args: &RunArgs) -> SinkKind {
    s.fixed_sink().unwrap_or(args.sink())
}

/// "odirect: reason; tee: reason" for an error message.
fn reasons(skipped: &[SkippedStrategy]) -> String {
    skipped
        .iter()
        .map(|s| format!("{}: {}", s.strategy, s.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One transfer: prepared outside the window, run inside it, its completion reports collected
/// and the sink ended after it; the bytes moved and received must be the payload's.
fn transfer_once<M: Meter>(
    meter: &mut M,
    sink: &mut Sink,
    source: &SourceFile,
    strategy: &dyn Strategy,
    args: &RunArgs,
) -> Result<M::Sample, RunError> {
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
    let mut transfer: Box<dyn Transfer + '_> = match prepared {
        Ok(t) => t,
        Err(e) => {
            // Close this run's connection properly, or its receiver's "done 0" would be taken
            // for the next strategy's result.
            let _ = sink.finish(out);
            return Err(io("preparing")(e));
        }
    };
    let (moved, mark) = meter.window(&mut || transfer.run())?;
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
    let sample = meter.sample(strategy.name(), mark, moved, finished, zerocopy)?;
    if moved != source.len || finished.received.is_some_and(|r| r != source.len) {
        return Err(RunError::Check {
            strategy: strategy.name().into(),
            message: format!(
                "moved {moved} bytes and {} arrived at the sink, expected {}",
                finished
                    .received
                    .map_or("an unknown number".into(), |r| r.to_string()),
                source.len
            ),
        });
    }
    Ok(sample)
}
