//! What a zc-trace killed with SIGKILL leaves behind, and its safe removal.
//!
//! Everything zc-trace makes outside its own process carries the maker's pid in its name:
//! the veth sink's namespaces (`zc-trace-PID-tx`, `zc-trace-PID-rx` in /run/netns), the unix
//! and pipe sinks' directories and a named payload (`zc-trace-sink.PID.XXXXXX`,
//! `zc-trace-payload.PID.XXXXXX` in --tmpdir), and a tracefs it mounted (mount source
//! `zc-trace-PID`). A leftover is removed only when its name proves it is zc-trace's and its
//! maker is dead: no process of that pid, or one that is not zc-trace (the pid was reused).
//! `zc-trace run` sweeps namespaces and directories before it starts; `zc-trace cleanup`
//! also unmounts tracefs (another tool may have started using a mount that is still there,
//! so that is only done when asked).

use std::path::{Path, PathBuf};

pub const NETNS_DIR: &str = "/run/netns";

/// The network namespace names of run `pid`'s veth sink.
pub fn netns_names(pid: u32) -> [String; 2] {
    [format!("zc-trace-{pid}-tx"), format!("zc-trace-{pid}-rx")]
}

/// The mkdtemp/mkstemp template of a temporary entry of kind `kind` ("sink", "payload").
pub fn temp_template(dir: &Path, kind: &str) -> PathBuf {
    dir.join(format!("zc-trace-{kind}.{}.XXXXXX", std::process::id()))
}

/// The tracefs mount source that marks a mount as made by this process.
pub fn tracefs_source() -> String {
    format!("zc-trace-{}", std::process::id())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Netns,
    TempEntry,
    Tracefs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub kind: Kind,
    pub path: PathBuf,
    /// The zc-trace process that made it.
    pub owner: u32,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            Kind::Netns => "network namespace",
            Kind::TempEntry => "temporary file",
            Kind::Tracefs => "tracefs mount",
        };
        write!(
            f,
            "{what} {} (zc-trace pid {})",
            self.path.display(),
            self.owner
        )
    }
}

/// The pid in a zc-trace name, or None when the name is not one zc-trace makes.
fn owner_of_name(name: &str) -> Option<(Kind, u32)> {
    if let Some(rest) = name.strip_prefix("zc-trace-") {
        // zc-trace-PID-tx / -rx
        if let Some(pid) = rest
            .strip_suffix("-tx")
            .or_else(|| rest.strip_suffix("-rx"))
            .and_then(|p| p.parse().ok())
        {
            return Some((Kind::Netns, pid));
        }
        // zc-trace-sink.PID.XXXXXX / zc-trace-payload.PID.XXXXXX
        for kind in ["sink.", "payload."] {
            if let Some(rest) = rest.strip_prefix(kind) {
                let (pid, suffix) = rest.split_once('.')?;
                if suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Some((Kind::TempEntry, pid.parse().ok()?));
                }
            }
        }
    }
    None
}

/// Whether the zc-trace that made a leftover is still running. The caller itself counts as
/// dead: it made nothing yet, so anything with its pid is an earlier process's.
fn owner_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "zc-trace")
}

/// zc-trace entries in `dir` (namespaces or temporary entries), of any owner.
fn named_in(dir: &Path, kind: Kind) -> Vec<Leftover> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let (k, owner) = owner_of_name(name.to_str()?)?;
            (k == kind).then(|| Leftover {
                kind: k,
                path: e.path(),
                owner,
            })
        })
        .collect()
}

/// tracefs mounts whose source names a zc-trace, from a mountinfo text.
fn tracefs_mounts(mountinfo: &str) -> Vec<Leftover> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "... mount-point ... - fstype source options"
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split(' ');
            let (fstype, source) = (right.next()?, right.next()?);
            let owner = source.strip_prefix("zc-trace-")?.parse().ok()?;
            let mount_point = left.split(' ').nth(4)?;
            (fstype == "tracefs").then(|| Leftover {
                kind: Kind::Tracefs,
                path: PathBuf::from(mount_point),
                owner,
            })
        })
        .collect()
}

/// Every leftover of a dead zc-trace: namespaces, entries in `tmpdir`, and with `tracefs`
/// its mounts. Those of a running zc-trace are left out.
pub fn find(tmpdir: &Path, tracefs: bool) -> Vec<Leftover> {
    let mut all = named_in(Path::new(NETNS_DIR), Kind::Netns);
    all.extend(named_in(tmpdir, Kind::TempEntry));
    if tracefs {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        all.extend(tracefs_mounts(&mountinfo));
    }
    all.retain(|l| !owner_alive(l.owner));
    all
}

/// Removes one leftover.
pub fn remove(l: &Leftover) -> Result<(), String> {
    match l.kind {
        Kind::Netns => crate::sink::delete_netns(&l.path),
        Kind::TempEntry => if l.path.is_dir() {
            std::fs::remove_dir_all(&l.path)
        } else {
            std::fs::remove_file(&l.path)
        }
        .map_err(|e| e.to_string()),
        Kind::Tracefs => nix::mount::umount2(&l.path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| e.desc().to_string()),
    }
}

/// `zc-trace cleanup`: exit 0 when everything found was removed (or nothing was found), 4
/// when something could not be.
pub fn main(args: &crate::cli::CleanupArgs) -> Result<std::process::ExitCode, crate::error::Error> {
    crate::capabilities::check_privileges()?;
    let found = find(&args.tmpdir, true);
    if found.is_empty() {
        say("nothing to remove: no leftover of a killed zc-trace")?;
    }
    let mut failed = 0;
    for l in &found {
        if args.dry_run {
            say(&format!("would remove {l}"))?;
            continue;
        }
        match remove(l) {
            Ok(()) => say(&format!("removed {l}"))?,
            Err(e) => {
                failed += 1;
                eprintln!("zc-trace: cannot remove {l}: {e}");
            }
        }
    }
    Ok(std::process::ExitCode::from(if failed > 0 { 4 } else { 0 }))
}

/// A line on stdout (`output`: a closed pipe ends the listing, not the cleanup).
fn say(line: &str) -> Result<(), crate::error::Error> {
    crate::output::println(line).map_err(crate::error::Error::Output)
}

/// Before a run: removes dead runs' namespaces and temporary entries, saying so on stderr.
/// A leftover that cannot be removed is only reported: the run may still work beside it.
pub fn sweep_before_run(tmpdir: &Path) {
    for l in find(tmpdir, false) {
        match remove(&l) {
            Ok(()) => eprintln!("zc-trace: removed a leftover of a killed run: {l}"),
            Err(e) => eprintln!("zc-trace: cannot remove a leftover of a killed run: {l}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_zc_trace_makes_are_claimed() {
        assert_eq!(owner_of_name("zc-trace-123-tx"), Some((Kind::Netns, 123)));
        assert_eq!(owner_of_name("zc-trace-123-rx"), Some((Kind::Netns, 123)));
        assert_eq!(
            owner_of_name("zc-trace-sink.77.aB3xYz"),
            Some((Kind::TempEntry, 77))
        );
        assert_eq!(
            owner_of_name("zc-trace-payload.77.aB3xYz"),
            Some((Kind::TempEntry, 77))
        );
        for other in [
            "zc-trace-abc-tx",
            "zc-trace-123",
            "zc-trace-123-txx",
            "zc-trace-sink.77.short",
            "zc-trace-sink.x.aB3xYz",
            "zc-trace-sink.aB3xYz",
            "my-zc-trace-1-tx",
            "netns0",
        ] {
            assert_eq!(owner_of_name(other), None, "{other}");
        }
    }

    #[test]
    fn templates_make_names_that_are_claimed() {
        let t = temp_template(Path::new("/tmp"), "sink");
        let name = t
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace("XXXXXX", "q1W2e3");
        assert_eq!(
            owner_of_name(&name),
            Some((Kind::TempEntry, std::process::id()))
        );
        for n in netns_names(42) {
            assert_eq!(owner_of_name(&n), Some((Kind::Netns, 42)));
        }
    }

    #[test]
    fn tracefs_mounts_are_found_by_their_source() {
        let mountinfo = "\
22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
40 22 0:12 / /sys/kernel/tracing rw,relatime - tracefs zc-trace-4242 rw
41 22 0:13 / /sys/kernel/debug/tracing rw - tracefs tracefs rw
42 22 0:14 / /mnt/x rw - ext4 zc-trace-1 rw";
        assert_eq!(
            tracefs_mounts(mountinfo),
            vec![Leftover {
                kind: Kind::Tracefs,
                path: PathBuf::from("/sys/kernel/tracing"),
                owner: 4242,
            }]
        );
    }

    #[test]
    fn a_leftover_with_this_process_pid_is_an_earlier_process_s() {
        assert!(!owner_alive(std::process::id()));
        // pid 1 is alive but is not zc-trace: its pid was reused.
        assert!(!owner_alive(1));
    }
}
