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

use std::process::ExitCode;
use std::time::Instant;

use crate::cli::RunArgs;
use crate::cmd::session::{self, Signals};
use crate::error::{Error, InputError, RunError};
use crate::kernel::capabilities::HostFacts;
use crate::report::{self, UntracedSample};
use crate::resources::cleanup;
use crate::transfer::payload::{SourceFile, DEFAULT_SEED};
use crate::transfer::sink::Finished;
use crate::transfer::strategies::ZerocopyReport;

pub fn main(args: RunArgs) -> Result<ExitCode, Error> {
    args.check().map_err(InputError::Usage)?;
    let user_file = args.file.as_deref().map(SourceFile::open).transpose()?;
    let host = HostFacts::detect();
    // Signals as in a traced run (the bench stops a long one with SIGTERM): the receiver and
    // temporary files go, and the exit status is 130.
    let runtime = crate::kernel::tracer::runtime()?;
    let mut signals = {
        let _context = runtime.enter();
        Signals::register()
    };
    let result = runtime.block_on(async move {
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
            sig = signals.recv() => interrupted(sig),
        }
    });
    cleanup::run_all();
    print(&result?)?;
    Ok(ExitCode::SUCCESS)
}

fn interrupted(sig: &str) -> ! {
    session::interrupted(sig, "receiver stopped, temporary files removed")
}

/// Writes the report; a reader that stopped reading (`| head`) is not an error (`output`).
fn print(text: &str) -> Result<(), Error> {
    crate::ui::output::print(text).map_err(Error::Output)
}

/// On the sender thread, as in a traced run (`measure::measure`, with the clock for a meter).
/// Returns the rendered report.
fn measure(host: HostFacts, source: SourceFile, args: &RunArgs) -> Result<String, Error> {
    let measured = crate::cmd::measure::measure(&mut Clock, &source, args)?;
    let runs = measured
        .runs
        .into_iter()
        .map(|(s, sink, _, samples)| (s, sink, samples))
        .collect();
    let report = report::untraced(host, measured.config, runs);
    Ok(report::render(&report, args.format))
}

/// CLOCK_MONOTONIC around `Transfer::run` alone (the traced window holds the same calls,
/// between its two markers).
struct Clock;

impl crate::cmd::measure::Meter for Clock {
    type Sample = UntracedSample;
    type Mark = u64;

    fn receiver_started(&mut self, _pid: u32) -> Result<(), RunError> {
        Ok(())
    }

    fn dma_device(&mut self, _ifindex: u32) -> Result<(), RunError> {
        Ok(())
    }

    fn window(
        &mut self,
        run: &mut dyn FnMut() -> std::io::Result<u64>,
    ) -> Result<(std::io::Result<u64>, u64), RunError> {
        let start = Instant::now();
        let moved = run();
        let window_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Ok((moved, window_ns))
    }

    fn sample(
        &mut self,
        _strategy: &str,
        window_ns: u64,
        moved: u64,
        finished: Finished,
        _zerocopy: Option<ZerocopyReport>,
    ) -> Result<UntracedSample, RunError> {
        Ok(UntracedSample {
            window_ns,
            bytes: moved,
            received: finished.received,
        })
    }
}
