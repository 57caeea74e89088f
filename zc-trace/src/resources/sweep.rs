//! What a zc-trace killed with SIGKILL leaves behind, and its safe removal.
//!
//! Everything zc-trace makes outside its own process carries the maker's pid in its name:
//! the veth sink's namespaces (`zc-trace-PID-tx`, `zc-trace-PID-rx` in /run/netns), the unix
//! and pipe sinks' directories and the payload's where O_TMPFILE is missing
//! (`zc-trace-sink.PID.XXXXXX`, `zc-trace-payload.PID.XXXXXX` in --tmpdir; a named payload
//! file of that name from older versions too), and a tracefs it mounted (mount source
//! `zc-trace-PID`). A leftover is removed only when its name proves it is zc-trace's and its
//! maker is dead: no process of that pid, or one that is not zc-trace (the pid was reused).
//! `zc-trace run` sweeps namespaces and directories before it starts; `zc-trace cleanup`
//! also unmounts tracefs (another tool may have started using a mount that is still there,
//! so that is only done when asked).

use std::path::{Path, PathBuf};

use crate::resources::mounts::{mounts, top_mount_at, unmount, Mount};
use crate::resources::names::{owner_of_name, Kind, Maker, NETNS_DIR};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub kind: Kind,
    pub path: PathBuf,
    /// The zc-trace process that made it.
    pub owner: Maker,
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
            self.owner.pid
        )
    }
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

/// tracefs mounts whose source names a zc-trace, from a mountinfo text: only those that are
/// the top mount at their path, since unmounting the path unmounts the top one (something
/// mounted over zc-trace's is someone else's).
fn tracefs_mounts(mountinfo: &str) -> Vec<Leftover> {
    let all = mounts(mountinfo);
    all.iter()
        .filter(|m| m.fs_type == "tracefs")
        .filter_map(|m| {
            let owner = Maker::parse(m.source.strip_prefix("zc-trace-")?)?;
            (top_mount_at(&all, &m.point)?.id == m.id).then(|| Leftover {
                kind: Kind::Tracefs,
                path: m.point.clone(),
                owner,
            })
        })
        .collect()
}

/// Whether this process sees the host's pids: in another PID namespace a live host run's
/// maker is not visible, and would look dead.
pub fn in_host_pid_namespace() -> Result<(), crate::error::EnvError> {
    crate::resources::names::check_own_namespace()
}

/// Whether a leftover of a dead maker is made as zc-trace makes it, by root: a look-alike
/// (another owner, another mode, a symlink, a namespace file that is no nsfs mount) is left
/// alone, whatever its name says.
fn made_as_zc_trace_makes_it(l: &Leftover, all_mounts: &[Mount]) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if l.kind == Kind::Tracefs {
        return Ok(()); // found by its mount, source and fstype
    }
    let meta = std::fs::symlink_metadata(&l.path).map_err(|e| e.to_string())?;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(format!(
            "owned by uid {}, not zc-trace's {euid}",
            meta.uid()
        ));
    }
    // Permission bits only (a setgid --tmpdir gives its new directories S_ISGID).
    let mode = meta.mode() & 0o777;
    let t = meta.file_type();
    let ok = match l.kind {
        // A private directory (0700), or a named payload of an older version (0600).
        Kind::TempEntry => (t.is_dir() && mode == 0o700) || (t.is_file() && mode == 0o600),
        // The bind mount of a namespace, or the empty file (mode 0) of one cut short.
        Kind::Netns => {
            let top = top_mount_at(all_mounts, &l.path);
            top.is_some_and(|m| m.fs_type == "nsfs")
                || (top.is_none() && t.is_file() && mode == 0 && meta.len() == 0)
        }
        Kind::Tracefs => true,
    };
    if !ok || t.is_symlink() || t.is_fifo() || t.is_socket() {
        return Err(format!("not as zc-trace makes it (mode {mode:o})"));
    }
    Ok(())
}

/// Every leftover of a dead zc-trace: namespaces, entries in `tmpdir`, and with `tracefs`
/// its mounts. Those of a running zc-trace, and look-alikes, are left out.
pub fn find(tmpdir: &Path, tracefs: bool) -> Vec<Leftover> {
    let mut all = Vec::new();
    // /run/netns itself must be the directory, not a link to some other place.
    if std::fs::symlink_metadata(NETNS_DIR).is_ok_and(|m| m.is_dir()) {
        all.extend(named_in(Path::new(NETNS_DIR), Kind::Netns));
    }
    all.extend(named_in(tmpdir, Kind::TempEntry));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if tracefs {
        all.extend(tracefs_mounts(&mountinfo));
    }
    let all_mounts = mounts(&mountinfo);
    all.retain(|l| {
        if l.owner.alive() {
            return false;
        }
        match made_as_zc_trace_makes_it(l, &all_mounts) {
            Ok(()) => true,
            Err(why) => {
                log::info!(
                    "left alone, though named like zc-trace's: {}: {why}",
                    l.path.display()
                );
                false
            }
        }
    });
    all
}

/// Removes one leftover: a sink directory through its descriptor (only the entries it holds,
/// then the empty directory), never by a path walk that a rename could redirect.
pub fn remove(l: &Leftover) -> Result<(), String> {
    match l.kind {
        Kind::Netns => crate::resources::mounts::delete_netns(&l.path),
        Kind::TempEntry => {
            let parent = l.path.parent().ok_or("no parent directory")?;
            let name = l.path.file_name().ok_or("no name")?;
            crate::resources::private_dir::remove_leftover(parent, name)
        }
        Kind::Tracefs => unmount(&l.path),
    }
}

/// Before a run: removes dead runs' namespaces and temporary entries, saying so on stderr.
/// A leftover that cannot be removed is only reported: the run may still work beside it.
pub fn sweep_before_run(tmpdir: &Path) {
    if in_host_pid_namespace().is_err() {
        return; // run refuses to measure there anyway; never judge makers it cannot see
    }
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
    fn tracefs_mounts_are_found_by_their_source_and_only_when_on_top() {
        let mountinfo = "\
22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
40 22 0:12 / /sys/kernel/tracing rw,relatime - tracefs zc-trace-4242-99 rw
41 22 0:13 / /sys/kernel/debug/tracing rw - tracefs tracefs rw
42 22 0:14 / /mnt/x rw - ext4 zc-trace-1-2 rw
43 22 0:12 / /mnt/with\\040space rw - tracefs zc-trace-4243-7 rw
44 22 0:12 / /mnt/under rw - tracefs zc-trace-4244-7 rw
45 44 0:30 / /mnt/under rw - tmpfs someone-elses rw";
        assert_eq!(
            tracefs_mounts(mountinfo),
            vec![
                Leftover {
                    kind: Kind::Tracefs,
                    path: PathBuf::from("/sys/kernel/tracing"),
                    owner: Maker {
                        pid: 4242,
                        start: 99
                    },
                },
                Leftover {
                    kind: Kind::Tracefs,
                    path: PathBuf::from("/mnt/with space"),
                    owner: Maker {
                        pid: 4243,
                        start: 7
                    },
                },
            ],
            "a mount under someone else's is not unmounted through the path"
        );
    }
}
