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
use std::sync::OnceLock;

pub const NETNS_DIR: &str = "/run/netns";

/// The zc-trace process that made a leftover: its pid and its start time (clock ticks after
/// boot, field 22 of /proc/PID/stat). The pair names one process for the whole uptime: a
/// later process with the same pid starts later, and neither a rename, a copy of the binary
/// under another name nor anything an unprivileged user can do changes a start time. (The
/// binary's name decided before: a copy named otherwise had a live run's sink swept.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maker {
    pub pid: u32,
    pub start: u64,
}

impl Maker {
    /// This process.
    pub fn me() -> Maker {
        static ME: OnceLock<Maker> = OnceLock::new();
        *ME.get_or_init(|| {
            let pid = std::process::id();
            Maker {
                pid,
                // /proc/self/stat is always readable by the process itself.
                start: start_ticks(pid).unwrap_or(0),
            }
        })
    }

    /// `PID-START`, as the names carry it.
    pub fn tag(self) -> String {
        format!("{}-{}", self.pid, self.start)
    }

    /// A tag, strictly: decimal numbers as zc-trace writes them (no sign, no leading zero),
    /// a pid above 0.
    fn parse(tag: &str) -> Option<Maker> {
        let (pid, start) = tag.split_once('-')?;
        let pid = u32::try_from(decimal(pid)?).ok().filter(|p| *p > 0)?;
        Some(Maker {
            pid,
            start: decimal(start)?,
        })
    }

    /// Whether the maker still runs: a process of its pid that started when it did, and is
    /// not a zombie (a zombie's cleanup will never run).
    pub fn alive(self) -> bool {
        procfs::process::Process::new(self.pid as i32)
            .and_then(|p| p.stat())
            .is_ok_and(|st| st.starttime == self.start && st.state != 'Z')
    }
}

/// A process's start time in clock ticks after boot.
fn start_ticks(pid: u32) -> Option<u64> {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()
        .map(|st| st.starttime)
}

/// A decimal number exactly as `format!` writes one: digits only, no leading zero.
fn decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// The network namespace names of this process's veth sink.
pub fn netns_names() -> [String; 2] {
    let tag = Maker::me().tag();
    [format!("zc-trace-{tag}-tx"), format!("zc-trace-{tag}-rx")]
}

/// The name of a temporary entry of kind `kind` ("sink", "payload") with a random `suffix`
/// of six letters and digits.
pub fn temp_name(kind: &str, suffix: &str) -> String {
    format!("zc-trace-{kind}.{}.{suffix}", Maker::me().tag())
}

/// The tracefs mount source that marks a mount as made by this process.
pub fn tracefs_source() -> String {
    format!("zc-trace-{}", Maker::me().tag())
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

/// The maker in a zc-trace name, or None when the name is not one zc-trace makes.
fn owner_of_name(name: &str) -> Option<(Kind, Maker)> {
    let rest = name.strip_prefix("zc-trace-")?;
    // zc-trace-PID-START-tx / -rx
    if let Some(tag) = rest
        .strip_suffix("-tx")
        .or_else(|| rest.strip_suffix("-rx"))
    {
        return Some((Kind::Netns, Maker::parse(tag)?));
    }
    // zc-trace-sink.PID-START.XXXXXX / zc-trace-payload.PID-START.XXXXXX
    let rest = rest
        .strip_prefix("sink.")
        .or_else(|| rest.strip_prefix("payload."))?;
    let (tag, suffix) = rest.split_once('.')?;
    (suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((Kind::TempEntry, Maker::parse(tag)?))
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

/// mountinfo writes a space, tab, newline and backslash in a path as `\ooo` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, b| v.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One mount of a mountinfo text, its paths decoded.
#[derive(Debug, Clone)]
struct Mount {
    id: i32,
    parent: i32,
    point: PathBuf,
    fs_type: String,
    source: String,
}

fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| procfs::process::MountInfo::from_line(line).ok())
        .map(|m| Mount {
            id: m.mnt_id,
            parent: m.pid,
            point: PathBuf::from(unescape(&m.mount_point.to_string_lossy())),
            fs_type: m.fs_type,
            source: unescape(m.mount_source.as_deref().unwrap_or("")),
        })
        .collect()
}

/// The mount a path lookup of `point` reaches: the one at `point` that no other mount at
/// `point` is mounted on.
fn top_mount_at<'a>(all: &'a [Mount], point: &Path) -> Option<&'a Mount> {
    let at: Vec<&Mount> = all.iter().filter(|m| m.point == point).collect();
    at.iter()
        .find(|m| !at.iter().any(|o| o.parent == m.id))
        .copied()
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
    crate::kernel::processes::check_own_namespace()
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
        Kind::Netns => crate::transfer::sink::delete_netns(&l.path),
        Kind::TempEntry => {
            let parent = l.path.parent().ok_or("no parent directory")?;
            let name = l.path.file_name().ok_or("no name")?;
            crate::resources::private_dir::remove_leftover(parent, name)
        }
        Kind::Tracefs => unmount(&l.path),
    }
}

/// Unmounts the mount at `path` (the top one: callers checked it is zc-trace's), without
/// following a symlink there.
pub fn unmount(path: &Path) -> Result<(), String> {
    nix::mount::umount2(
        path,
        nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
    )
    .map_err(|e| e.desc().to_string())
}

/// Unmounts the tracefs this process mounted at `path`, if it is still the top mount there
/// (another tool may have mounted over it since).
pub fn unmount_own_tracefs(path: &Path) -> Result<(), String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let all = mounts(&mountinfo);
    match top_mount_at(&all, path) {
        Some(m) if m.fs_type == "tracefs" && m.source == tracefs_source() => unmount(path),
        Some(_) => Err("another mount is on top of zc-trace's there now; left mounted".into()),
        None => Ok(()),
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

    const M: Maker = Maker {
        pid: 77,
        start: 123456,
    };

    #[test]
    fn only_names_zc_trace_makes_are_claimed() {
        assert_eq!(
            owner_of_name("zc-trace-77-123456-tx"),
            Some((Kind::Netns, M))
        );
        assert_eq!(
            owner_of_name("zc-trace-77-123456-rx"),
            Some((Kind::Netns, M))
        );
        assert_eq!(
            owner_of_name("zc-trace-sink.77-123456.aB3xYz"),
            Some((Kind::TempEntry, M))
        );
        assert_eq!(
            owner_of_name("zc-trace-payload.77-123456.aB3xYz"),
            Some((Kind::TempEntry, M))
        );
        for other in [
            "zc-trace-abc-tx",
            "zc-trace-123",
            "zc-trace-123-tx",
            "zc-trace-77-123456-txx",
            "zc-trace-sink.77-1.short",
            "zc-trace-sink.x-1.aB3xYz",
            "zc-trace-sink.aB3xYz",
            "zc-trace-sink.77.aB3xYz",
            // Strictly as zc-trace writes numbers (the hardening issue saw these claimed).
            "zc-trace-payload.+999990-1.xxxxxx",
            "zc-trace-payload.00999990-1.xxxxxx",
            "zc-trace-payload.999990-+1.xxxxxx",
            "zc-trace-payload.999990-01.xxxxxx",
            "zc-trace-0-5-tx",
            "zc-trace-99999999999-5-tx",
            "zc-trace-sink.77-1.aB3xY!",
            "my-zc-trace-1-2-tx",
            "netns0",
        ] {
            assert_eq!(owner_of_name(other), None, "{other}");
        }
    }

    #[test]
    fn names_made_are_claimed_as_this_process() {
        let name = temp_name("sink", "q1W2e3");
        assert_eq!(owner_of_name(&name), Some((Kind::TempEntry, Maker::me())));
        for n in netns_names() {
            assert_eq!(owner_of_name(&n), Some((Kind::Netns, Maker::me())));
        }
        assert!(Maker::me().start > 0, "the start time is read");
    }

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

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
    }

    /// Liveness is the start time, not the name of the binary: this process is alive under
    /// its own pid and start, and dead with any other start (a pid reused).
    #[test]
    fn a_maker_is_alive_only_with_its_own_start_time() {
        let me = Maker::me();
        assert!(me.alive());
        assert!(!Maker {
            start: me.start + 1,
            ..me
        }
        .alive());
        let init = Maker {
            pid: 1,
            start: start_ticks(1).unwrap(),
        };
        assert!(init.alive(), "pid 1 runs, whatever its name");
        assert!(!Maker {
            start: init.start + 5,
            ..init
        }
        .alive());
    }
}
