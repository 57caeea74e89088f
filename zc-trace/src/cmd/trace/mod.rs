//! `zc-trace trace`: the same accounting as `run`, for a program zc-trace does not write. The
//! kernel side follows the traced tasks (TASKS, with every task they start, from
//! task:task_newtask) and keeps bytes by descriptor kind; user space starts the command or
//! finds the processes' threads, waits for the end, and reads the aggregates once (and once
//! per --interval).

pub(crate) mod command;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use zc_trace_common::{counter, Role, RoleStats};

use crate::cli::{Expect, TraceArgs};
use crate::cmd::session::{Interruptible, Session, Signals};
use crate::error::{EnvError, Error, InputError, RunError};
use crate::kernel::probes::HookId;
use crate::kernel::processes;
use crate::kernel::tracer::Tracer;
use crate::report::claims::{self, Claims, RunFacts};
use crate::report::trace::{self as model, Collected, Ending, Target, TraceReport};
use crate::report::Format;
use crate::report::RoleSample;

/// How often the end conditions are checked.
const POLL: Duration = Duration::from_millis(50);
/// After a signal was passed on to the command: how long its tasks get to finish (they are
/// counted meanwhile) before the report is written anyway.
const GRACE: Duration = Duration::from_secs(5);

pub fn main(args: TraceArgs) -> Result<ExitCode, Error> {
    // Bad input first (exit 2), then the command (126/127), then the environment (3).
    args.check().map_err(InputError::Usage)?;
    let claims = match &args.claims {
        Some(path) => Some(Claims::load(path)?),
        None => None,
    };
    let program = match args.command.first() {
        Some(p) => Some(command::resolve(p)?),
        None => None,
    };
    let user = match &program {
        Some(_) => command::run_as(args.as_root)?,
        None => None,
    };
    if !args.pid.is_empty() {
        processes::check(&args.pid)?;
    }
    let Interruptible {
        session: Session { host, tracefs },
        runtime,
        mut signals,
    } = Session::open_interruptible(|| Ok(crate::resources::names::check_own_namespace()?))?;
    let result = runtime.block_on(async {
        let mut tracer = Tracer::load_for(&host, &tracefs, Some(args.max_tasks))?;
        if tracer.attach_report().get(HookId::TaskNew).method.is_none() {
            return Err(Error::Env(EnvError::RequiredHook {
                hook: HookId::TaskNew.name().into(),
                tried: tracer.attach_report().get(HookId::TaskNew).why_not(),
            }));
        }
        let started = Instant::now();
        let mut target = Target {
            command: args.command.first().map(|_| {
                args.command
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect()
            }),
            pids: args.pid.clone(),
            user: user.as_ref().map(|u| u.name.clone()),
        };
        let mut child = match &program {
            Some(path) => {
                let child = spawn(&mut tracer, path, &args, user.as_ref())?;
                target.pids = vec![child.id()];
                if target.user.is_none() {
                    target.user = Some("root".into());
                }
                Some(child)
            }
            None => {
                let threads = attach(&mut tracer, &args.pid)?;
                eprintln!(
                    "zc-trace: tracing {threads} threads of pid {} and what they start; Ctrl-C \
                     ends the trace",
                    args.pid
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                );
                None
            }
        };
        let ending = follow(&mut tracer, &mut child, &args, started, &mut signals).await?;
        let elapsed_ns = started.elapsed().as_nanos() as u64;
        Ok((tracer, target, ending, elapsed_ns))
    });
    crate::resources::cleanup::run_all();
    let (tracer, target, (ending, intervals), elapsed_ns) = result?;

    let collected = collect(&tracer, elapsed_ns)?;
    let probes = tracer.attach_report().clone();
    let name: &'static str = Box::leak(
        target
            .command
            .as_ref()
            .map_or_else(|| "traced processes".to_string(), |c| c[0].clone())
            .into_boxed_str(),
    );
    let strategy = args.strategy.as_ref().map(|l| l.0[0]);
    let mut program = model::program(&probes, name, &collected, strategy);
    let tasks = model::TaskCoverage {
        table_size: args.max_tasks,
        not_followed: collected.stats.counter(counter::TASKS_NOT_FOLLOWED),
    };
    tasks.apply(&mut program);
    if let Some(s) = tasks.shortfall() {
        eprintln!("zc-trace: the report is incomplete: {s}");
    }
    let expectation = args
        .expect
        .map(|Expect::ZeroCopy| model::expect_zero_copy(&program));
    let claims_report = match (&claims, strategy) {
        (Some(c), Some(_)) => {
            let report = crate::report::Report {
                schema: 1,
                tool: crate::report::trace::tool(),
                host: host.clone(),
                config: model::run_config_for_claims(&program),
                probes: probes.hooks.clone(),
                strategies: vec![program.clone()],
                claims: None,
            };
            let verdicts = claims::judge(
                c,
                &report,
                &RunFacts {
                    sink_has_sg: None,
                    sink: report.config.sink_description.clone(),
                    cold: false,
                },
            );
            if verdicts.verdicts.is_empty() {
                return Err(InputError::Claims {
                    path: args.claims.clone().expect("claims given"),
                    reason: format!("none of its claims is about {} (--strategy)", program.id),
                }
                .into());
            }
            Some(verdicts)
        }
        _ => None,
    };
    let differs = expectation
        .as_ref()
        .is_some_and(|e| e.verdict == crate::report::claims::Outcome::Differs)
        || claims_report.as_ref().is_some_and(|c| c.any_differs());
    let exit_status = ending.exit_status;
    let report = TraceReport {
        schema: 1,
        mode: "trace",
        tool: crate::report::trace::tool(),
        host,
        target,
        ending,
        tasks,
        probes: probes.hooks.clone(),
        by_fd_kind: model::by_fd_kind(&collected.fds),
        io_uring_requests: collected.uring.as_deref().map(model::uring_ops),
        program,
        intervals,
        expectation,
        claims: claims_report,
    };
    // A reader that stopped reading (`| head`) is not an error (`output`).
    crate::ui::output::write_with(|out| model::write(&report, args.format, out))
        .map_err(Error::Output)?;
    Ok(if differs && !args.no_fail {
        ExitCode::from(1)
    } else {
        ExitCode::from(exit_status.map_or(0, |s| s.clamp(0, 255) as u8))
    })
}

/// Starts the command from this thread, marked in TASKS as the spawner: the kernel side
/// follows the child it forks, counted from its execve on.
fn spawn(
    tracer: &mut Tracer,
    path: &std::path::Path,
    args: &TraceArgs,
    user: Option<&command::RunAs>,
) -> Result<std::process::Child, Error> {
    let tid = nix::unistd::gettid().as_raw() as u32;
    tracer.spawner(tid, true)?;
    let spawned = command::command(path, &args.command, user).spawn();
    tracer.spawner(tid, false)?;
    spawned.map_err(|e| Error::Command {
        message: format!("cannot start `{}`: {e}", args.command[0].to_string_lossy()),
        code: if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    })
}

/// Follows the running processes' threads and descendants. Threads started while zc-trace
/// reads /proc are followed by the kernel only if their parent already was: read again until
/// nothing new appears.
fn attach(tracer: &mut Tracer, pids: &[u32]) -> Result<usize, Error> {
    let mut threads = 0;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let tids = processes::threads_and_descendants(pids);
        threads = tids.len();
        seen.extend(tids.iter().copied());
        if tracer.follow(&tids)? == 0 {
            break;
        }
    }
    // Never keep a thread that exited during the attach (2 of 8 tries left one).
    let seen: Vec<u32> = seen.into_iter().collect();
    threads -= tracer.unfollow_exited(&seen)?.min(threads);
    if !processes::any_alive(pids) {
        return Err(RunError::Check {
            strategy: "trace".into(),
            message: format!(
                "the process{} exited while zc-trace attached: nothing to trace",
                if pids.len() == 1 { "" } else { "es" }
            ),
        }
        .into());
    }
    Ok(threads)
}

/// Waits for the end: every traced task gone, --duration, or a signal (passed on to the
/// command). Prints the --interval lines meanwhile.
async fn follow(
    tracer: &mut Tracer,
    child: &mut Option<std::process::Child>,
    args: &TraceArgs,
    started: Instant,
    signals: &mut Signals,
) -> Result<(Ending, Vec<model::Interval>), Error> {
    let mut intervals = Vec::new();
    let mut tick = tokio::time::interval(POLL);
    let mut next_interval = args.interval.map(|d| started + d);
    let mut last = (Box::new(RoleStats::zeroed()), started);
    let mut status: Option<i32> = None;
    let mut told_left = false;
    let mut reason: Option<String> = None;
    let mut stop_at: Option<Instant> = None;
    let mut killed: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            sig = signals.recv() => {
                if reason.is_some() {
                    // A second signal: stop waiting for the command.
                    break;
                }
                reason = Some(sig.to_string());
                // --pid processes are not zc-trace's: it stops watching them at once.
                if child.is_none() {
                    break;
                }
                // A terminal's Ctrl-C went to its whole foreground group: the command, in
                // zc-trace's group, has it already (passing it on made it two).
                let from_terminal = sig == "SIGINT"
                    && Signals::sigint_from_terminal()
                    && child.as_ref().is_some_and(|c| in_our_group(c.id()));
                if !from_terminal {
                    pass_on(tracer, sig)?;
                }
                stop_at = Some(Instant::now() + GRACE);
            }
        }
        if let Some(c) = child.as_mut() {
            if status.is_none() {
                if let Ok(Some(s)) = c.try_wait() {
                    status = Some(exit_code(s));
                }
            }
        }
        if let (Some(every), Some(due)) = (args.interval, next_interval) {
            if Instant::now() >= due {
                let now = tracer.snapshot(Role::Sender)?;
                let secs = last.1.elapsed().as_secs_f64();
                let delta = Collected {
                    stats: RoleSample::delta(&now, &last.0),
                    fds: tracer.fd_stats()?,
                    uring: None,
                    elapsed_ns: (secs * 1e9) as u64,
                };
                let line = model::interval(
                    tracer.attach_report(),
                    &delta,
                    started.elapsed().as_secs_f64(),
                    secs,
                );
                let text = model::interval_line(&line);
                if args.format == Format::Table {
                    // Tracing goes on whatever became of stdout; the report says the rest.
                    if let Err(e) = crate::ui::output::println(&text) {
                        log::warn!("cannot write the interval line: {e}");
                    }
                } else {
                    eprintln!("zc-trace: {text}");
                }
                intervals.push(line);
                last = (now, Instant::now());
                next_interval = Some(due + every);
            }
        }
        let command_done = child.is_none() || status.is_some();
        if command_done && tracer.followed_tasks()? == 0 {
            reason.get_or_insert_with(|| "every traced task exited".into());
            break;
        }
        if let (Some(s), false, Some(_)) = (status, told_left, child.as_ref()) {
            told_left = true;
            eprintln!(
                "zc-trace: the command exited (status {s}); tasks it started still run: tracing \
                 them until they exit, --duration or Ctrl-C"
            );
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            // What ignored the signal must not outlive the trace unnoticed (the command used
            // to keep running while zc-trace exited 0 without a word).
            if let Some(c) = child.as_mut() {
                let left = followed_processes(tracer, status.is_none().then(|| c.id()))?;
                if !left.is_empty() {
                    let what = format!(
                        "{} did not end within {} s of the signal: killed with SIGKILL",
                        left.iter()
                            .map(|(pid, comm)| format!("pid {pid} ({comm})"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        GRACE.as_secs()
                    );
                    eprintln!("zc-trace: {what}");
                    for (pid, _) in &left {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(*pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    if status.is_none() {
                        if let Ok(s) = c.wait() {
                            status = Some(exit_code(s));
                        }
                    }
                    killed = Some(what);
                }
            }
            break;
        }
        if reason.is_none() && args.duration.is_some_and(|d| started.elapsed() >= d) {
            reason = Some("--duration".into());
            if child.is_some() {
                // The command and whatever it started that still runs (an orphan of the
                // command's shell included): all of it is zc-trace's doing.
                pass_on(tracer, "SIGTERM")?;
                stop_at = Some(Instant::now() + GRACE);
            } else {
                break;
            }
        }
    }
    Ok((
        Ending {
            reason: reason.unwrap_or_default(),
            exit_status: status,
            killed,
        },
        intervals,
    ))
}

/// Passes a signal on to every process zc-trace followed from the command it started (never
/// to --pid processes: they are not zc-trace's): the command and each task it started that
/// still runs, whatever process group it is in, so an orphan of the command's shell is
/// reached too.
fn pass_on(tracer: &Tracer, sig: &str) -> Result<(), Error> {
    let signal = match sig {
        "SIGINT" => nix::sys::signal::Signal::SIGINT,
        "SIGHUP" => nix::sys::signal::Signal::SIGHUP,
        _ => nix::sys::signal::Signal::SIGTERM,
    };
    for (pid, _) in followed_processes(tracer, None)? {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
    }
    Ok(())
}

/// The processes (tgid, comm) of the followed tasks that still run, and `command` if given
/// (it may be between its fork and its exec); never zc-trace itself.
fn followed_processes(tracer: &Tracer, command: Option<u32>) -> Result<Vec<(u32, String)>, Error> {
    let own = std::process::id();
    let mut found = std::collections::BTreeMap::new();
    for tid in tracer.followed_tids()?.into_iter().chain(command) {
        let Ok(status) = procfs::process::Process::new(tid as i32).and_then(|p| p.status()) else {
            continue; // gone
        };
        if status.tgid as u32 == own || !processes::task_alive(tid) {
            continue;
        }
        found.insert(status.tgid as u32, status.name);
    }
    Ok(found.into_iter().collect())
}

/// The command's status as a shell gives it: its exit code, or 128 + the signal that ended it.
fn exit_code(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

/// Whether process `pid` is in zc-trace's process group.
fn in_our_group(pid: u32) -> bool {
    nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
        .is_ok_and(|g| g == nix::unistd::getpgrp())
}

/// Everything the kernel side counted for the traced tasks.
fn collect(tracer: &Tracer, elapsed_ns: u64) -> Result<Collected, Error> {
    let stats = tracer.snapshot(Role::Sender)?;
    let uring = match tracer.attach_report().get(HookId::IoUringSubmit).method {
        Some(_) => Some(tracer.uring_ops()?),
        None => None,
    };
    Ok(Collected {
        stats: RoleSample::delta(&stats, &RoleStats::zeroed()),
        fds: tracer.fd_stats()?,
        uring,
        elapsed_ns,
    })
}
