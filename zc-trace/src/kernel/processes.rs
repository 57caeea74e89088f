//! Running processes as the kernel lists them in /proc: for `trace --pid`, their threads and
//! descendants and whether they still run; for every command, whether zc-trace sees the
//! kernel's own pids.

use std::collections::{BTreeSet, HashMap};

use crate::error::InputError;

/// The kernel's flag for its own threads (include/linux/sched.h).
const PF_KTHREAD: u32 = 0x0020_0000;

/// Fails unless every pid is a running process zc-trace can trace: not zc-trace itself (it
/// would count its own polling and never end), not a kernel thread (no system calls of a
/// program to count), not a zombie (it has exited). A process whose main thread has exited
/// while others run is traced: its threads are what runs.
pub fn check(pids: &[u32]) -> Result<(), InputError> {
    for &pid in pids {
        let refuse = |why: &str| Err(InputError::Usage(format!("--pid {pid}: {why}")));
        if !std::path::Path::new(&format!("/proc/{pid}/task")).is_dir() {
            return refuse("no such process");
        }
        if pid == std::process::id() {
            return refuse("that is this zc-trace itself, which would count its own work");
        }
        let stat = procfs::process::Process::new(pid as i32).and_then(|p| p.stat());
        if let Ok(st) = &stat {
            if st.flags & PF_KTHREAD != 0 {
                return refuse(&format!(
                    "that is a kernel thread ({}): it runs no program whose system calls \
                     could be counted",
                    st.comm
                ));
            }
        }
        if !any_alive(&[pid]) {
            return refuse(
                "that process has exited (a zombie, not yet reaped by its parent): nothing to \
                 trace",
            );
        }
    }
    Ok(())
}

/// The threads of `pids` and of all their descendants, as the kernel numbers them; never
/// zc-trace's own (`--pid 1`, or the shell that started zc-trace: zc-trace descends from
/// them, and would count its own polling). zc-trace starts nothing while it attaches, and a
/// thread it starts later has an untraced parent, so it is not followed either.
pub fn threads_and_descendants(pids: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(all) = procfs::process::all_processes() {
        for p in all.flatten() {
            if let Some(ppid) = parent_of(&p) {
                children.entry(ppid).or_default().push(p.pid as u32);
            }
        }
    }
    let own = std::process::id();
    let mut processes = BTreeSet::new();
    let mut todo: Vec<u32> = pids.to_vec();
    while let Some(p) = todo.pop() {
        if p != own && processes.insert(p) {
            todo.extend(children.get(&p).into_iter().flatten());
        }
    }
    processes
        .into_iter()
        .flat_map(|p| tasks_of(p).into_iter().map(|t| t.tid as u32))
        .collect()
}

/// The parent pid, from /proc/PID/stat; none for a process that has gone meanwhile.
fn parent_of(p: &procfs::process::Process) -> Option<u32> {
    p.stat().ok().map(|st| st.ppid as u32)
}

/// The threads of process `pid` as /proc/PID/task lists them; none once it has gone.
fn tasks_of(pid: u32) -> Vec<procfs::process::Task> {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.tasks())
        .map(|tasks| tasks.flatten().collect())
        .unwrap_or_default()
}

/// Whether a stat's state is a running task: neither a zombie (Z) nor dead (X).
fn runs(stat: procfs::process::Stat) -> bool {
    !matches!(stat.state, 'Z' | 'X')
}

/// Whether the task `tid` (any thread, by its tid) still runs: its /proc entry is there and
/// it is neither a zombie nor dead.
pub fn task_alive(tid: u32) -> bool {
    procfs::process::Process::new(tid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(runs)
}

/// Whether any thread of `pids` still runs (not a zombie): a main thread that called
/// pthread_exit is a zombie while the others run.
pub fn any_alive(pids: &[u32]) -> bool {
    pids.iter()
        .any(|&p| tasks_of(p).iter().any(|t| t.stat().is_ok_and(runs)))
}
