//! `zc-trace run`: checks the host, loads the probes, starts the receiver, runs each strategy
//! inside a measured window on a dedicated thread, and renders the report. Ctrl-C (or SIGTERM,
//! SIGHUP) at any moment stops the receiver, removes temporary files and exits; the probes are
//! detached by the kernel when the process's descriptors close.

use std::process::ExitCode;

use zc_trace_common::{Role, RoleStats, MARK_START, MARK_STOP};

use crate::cli::RunArgs;
use crate::cmd::session::{self, Interruptible, Session};
use crate::error::{Error, InputError, RunError};
use crate::kernel::capabilities::HostFacts;
use crate::kernel::tracer::Tracer;
use crate::report::claims::{self, Claims, RunFacts};
use crate::report::{self, Report, RoleSample, Sample};
use crate::resources::cleanup;
use crate::transfer::payload::{SourceFile, DEFAULT_SEED};
use crate::transfer::sink::Finished;
use crate::transfer::strategies::ZerocopyReport;

pub fn main(args: RunArgs) -> Result<ExitCode, Error> {
    // Bad input first (exit 2), then the environment (exit 3), then the expensive parts.
    args.check().map_err(InputError::Usage)?;
    let user_file = args.file.as_deref().map(SourceFile::open).transpose()?;
    let claims = match &args.claims {
        Some(path) => Claims::load(path)?,
        None => Claims::seed(),
    };
    let args_claims = args.claims.clone();
    // A claims file about none of the selected strategies is bad input, known now: it used
    // to fail only after the whole measurement (the check after it stays, for strategies this
    // host skips).
    if let Some(path) = &args.claims {
        let selected: Vec<_> = args.strategies.0.iter().map(|s| s.id()).collect();
        let grades_one = claims.claims.iter().any(|c| {
            crate::transfer::strategies::by_name(&c.strategy)
                .is_some_and(|s| selected.contains(&s.id()))
        });
        if !grades_one {
            return Err(InputError::Claims {
                path: path.clone(),
                reason: format!(
                    "none of its {} claims is about a selected strategy ({}); select their \
                     strategies with --strategies",
                    claims.claims.len(),
                    selected
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
            .into());
        }
    }
    let layout_args = (args.wide, args.explain, args.color.enabled());
    // (file, format: None for HTML)
    let exports: Vec<(std::path::PathBuf, Option<crate::report::Format>)> = [
        (args.export_json.clone(), Some(crate::report::Format::Json)),
        (
            args.export_markdown.clone(),
            Some(crate::report::Format::Markdown),
        ),
        (args.export_html.clone(), None),
    ]
    .into_iter()
    .filter_map(|(p, f)| p.map(|p| (p, f)))
    .collect();
    // An export that cannot be written is bad input, found before the measurement (a missing
    // directory used to fail only after it).
    for (path, _) in &exports {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            return Err(InputError::Usage(format!(
                "--export-*: {}: the directory {} does not exist",
                path.display(),
                dir.display()
            ))
            .into());
        }
    }
    // The signal handlers are installed before tracefs is mounted (see `session`); from here
    // on a signal waits in the handler until the select below acts on it.
    let Interruptible {
        session: Session { host, tracefs },
        runtime,
        mut signals,
    } = Session::open_interruptible(|| {
        // What runs killed with SIGKILL left (their namespace names could collide with ours).
        crate::resources::sweep::sweep_before_run(&args.tmpdir);
        Ok(())
    })?;

    // Borrowed into the run's `async move` block; the report's write below selects on them too.
    let signals_during_run = &mut signals;
    let result = runtime.block_on(async move {
        let work = async move {
            // Room for the generated payload, and for one copy of it where a strategy or the
            // sink writes a file in --tmpdir (each run replaces the last one's).
            let writes_file = args.sink() == crate::transfer::sink::SinkKind::File
                || args
                    .strategies
                    .0
                    .iter()
                    .any(|s| s.fixed_sink() == Some(crate::transfer::sink::SinkKind::File));
            let len = user_file.as_ref().map_or(args.size, |f| f.len);
            // Checked: --size 8589934592G twice is 2^64, which used to wrap to 0 and skip the
            // check (then the run filled the filesystem).
            let needed = (u64::from(user_file.is_none()) + u64::from(writes_file))
                .checked_mul(len)
                .ok_or_else(|| InputError::TmpDir {
                    path: args.tmpdir.clone(),
                    reason: format!(
                        "the payload and the file a strategy writes need twice {len} bytes,                          more than any filesystem holds: pick a smaller --size"
                    ),
                })?;
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
                    let progress = crate::ui::progress::Progress::spinner(
                        args.quiet,
                        format!(
                            "generating the {} payload",
                            crate::ui::units::human_bytes(size as f64)
                        ),
                    );
                    tokio::task::spawn_blocking(move || {
                        let generated = SourceFile::generate(&dir, size, DEFAULT_SEED);
                        progress.finish();
                        generated
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
            sig = signals_during_run.recv() => interrupted(sig),
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
                    .map(|s| s.id.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        .into());
    }
    let differs = verdicts.any_differs();
    report.claims = Some(verdicts);
    // The exports first: a report that cannot be saved is an error before the terminal's.
    for (path, format) in &exports {
        let text = match format {
            Some(f) => report::render(&report, *f),
            None => report::html::render(&report),
        };
        std::fs::write(path, text).map_err(|e| {
            Error::Output(std::io::Error::new(
                e.kind(),
                format!("--export to {}: {e}", path.display()),
            ))
        })?;
    }
    let layout = report::Layout {
        wide: layout_args.0,
        explain: layout_args.1,
        color: layout_args.2,
        width: report::Layout::terminal_width(),
        no_fail,
    };
    // On a thread of its own, so that a signal still ends zc-trace while the write blocks on
    // a reader that does not read (it used to be ignored until the reader drained the pipe).
    let written = runtime.block_on(async {
        let write = tokio::task::spawn_blocking(move || {
            crate::ui::output::write_with(|out| {
                report::write_laid_out(&report, format, &layout, out)
            })
        });
        tokio::select! {
            r = write => r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            sig = signals.recv() => interrupted(sig),
        }
    });
    // A reader that stopped reading (`| head`) is not an error (`output`): the status stays
    // the run's.
    written.map_err(Error::Output)?;
    Ok(if differs && !no_fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A signal arrived: cleanup, the line, exit 130.
fn interrupted(sig: &str) -> ! {
    session::interrupted(
        sig,
        "probes detached, receiver stopped, temporary files removed",
    )
}

/// Runs on the sender thread: everything it does inside a window is what gets counted.
fn measure(
    tracer: Tracer,
    host: HostFacts,
    source: SourceFile,
    args: &RunArgs,
) -> Result<(Report, crate::report::Format, bool), Error> {
    let mut meter = Probes {
        tid: nix::unistd::gettid().as_raw() as u32,
        tracer,
    };
    let measured = crate::cmd::measure::measure(&mut meter, &source, args)?;
    let report = report::build(
        host,
        measured.config,
        meter.tracer.attach_report(),
        measured.runs,
    );
    Ok((report, args.format, args.no_fail))
}

/// The probes' counters around each transfer, for the sender thread `tid`.
struct Probes {
    tracer: Tracer,
    tid: u32,
}

/// The counters and the window count just before a window opens.
struct Before {
    sender: Box<RoleStats>,
    receiver: Box<RoleStats>,
    windows: u64,
}

impl crate::cmd::measure::Meter for Probes {
    type Sample = Sample;
    type Mark = Before;

    fn receiver_started(&mut self, pid: u32) -> Result<(), RunError> {
        self.tracer.track(pid, Role::Receiver)
    }

    fn dma_device(&mut self, ifindex: u32) -> Result<(), RunError> {
        self.tracer.set_dma_device(ifindex)
    }

    fn window(
        &mut self,
        run: &mut dyn FnMut() -> std::io::Result<u64>,
    ) -> Result<(std::io::Result<u64>, Before), RunError> {
        let before = Before {
            sender: self.tracer.snapshot(Role::Sender)?,
            receiver: self.tracer.snapshot(Role::Receiver)?,
            windows: self.tracer.task(self.tid).map_or(0, |t| t.windows),
        };
        mark(MARK_START);
        let moved = run();
        mark(MARK_STOP);
        Ok((moved, before))
    }

    fn sample(
        &mut self,
        strategy: &str,
        before: Before,
        moved: u64,
        finished: Finished,
        zerocopy: Option<ZerocopyReport>,
    ) -> Result<Sample, RunError> {
        let sender_after = self.tracer.snapshot(Role::Sender)?;
        let receiver_after = self.tracer.snapshot(Role::Receiver)?;
        self.tracer.forget_sockets()?;
        let task = self
            .tracer
            .task(self.tid)
            .filter(|t| t.windows == before.windows + 1 && t.window_end_ns >= t.window_start_ns)
            .ok_or_else(|| RunError::Check {
                strategy: strategy.into(),
                message: "the measured window was not seen by the eBPF program at \
                          raw_syscalls:sys_enter"
                    .into(),
            })?;
        Ok(Sample {
            sender: RoleSample::delta(&sender_after, &before.sender),
            receiver: RoleSample::delta(&receiver_after, &before.receiver),
            window_ns: task.window_end_ns - task.window_start_ns,
            bytes: moved,
            zerocopy,
            retransmitted: finished.retransmitted,
            send_time: finished.send_time,
            received: finished.received,
        })
    }
}

/// Opens or closes the measured window: see `zc_trace_common::MARK_START`.
fn mark(marker: u64) {
    // SAFETY: close() on a descriptor number zc-trace never holds fails with EBADF and has
    // no other effect.
    let _ = unsafe { nix::libc::close(marker as i32) };
}
