//! The names zc-trace gives what it makes outside its own process, and the identity of their
//! maker: every such name carries the maker's pid and start time (`PID-START`), so that the
//! sweep can tell a dead run's leftover from a live run's, and from a look-alike. The pids are
//! only meaningful in the host's PID namespace (`check_own_namespace`).

use std::sync::OnceLock;

use crate::error::EnvError;

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
    pub fn parse(tag: &str) -> Option<Maker> {
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

/// The maker in a zc-trace name, or None when the name is not one zc-trace makes.
pub fn owner_of_name(name: &str) -> Option<(Kind, Maker)> {
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

/// zc-trace must see the kernel's own pids: in a PID namespace other than the first, the
/// numbers it reads in /proc are not the ones the eBPF programs see, and a live run's maker
/// is not visible to the sweep (it would look dead).
pub fn check_own_namespace() -> Result<(), EnvError> {
    let status = procfs::process::Process::myself()
        .and_then(|p| p.status())
        .map_err(|e| EnvError::Read {
            path: "/proc/self/status".into(),
            source: std::io::Error::other(e),
        })?;
    // NSpid is there since 4.1; before, a kernel could not say (one level, then).
    let levels = status.nspid.map_or(1, |l| l.len());
    // NSpid lists the levels from the PID namespace of the /proc mount down, so a namespace
    // with a /proc of its own (`unshare --pid --mount-proc`) shows one level: its namespace
    // file's inode tells, the initial namespace's being a constant (PROC_PID_INIT_INO).
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    let initial = std::fs::metadata("/proc/self/ns/pid").map_or(true, |m| {
        std::os::unix::fs::MetadataExt::ino(&m) == PROC_PID_INIT_INO
    });
    if levels > 1 || !initial {
        return Err(EnvError::PidNamespace);
    }
    Ok(())
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
