//! tracefs: finding (or mounting) it, and reading classic tracepoint formats so that the eBPF
//! programs read fields at this kernel's offsets rather than hard-coded ones.

use std::path::{Path, PathBuf};

use crate::error::EnvError;
use crate::resources::cleanup;

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Returns the tracefs root, mounting tracefs at /sys/kernel/tracing if no mount exists.
/// A mount made here is registered for removal at exit.
pub fn ensure_mounted() -> Result<PathBuf, EnvError> {
    if let Some(p) = find() {
        return Ok(p);
    }
    // Mounted where zc-trace looks, but not readable by this process (mode 0700, root only):
    // mounting it again would not help.
    if let Some(m) = mounts()
        .into_iter()
        .find(|m| !m.readable && m.where_zc_trace_looks())
    {
        return Err(EnvError::TracefsUnreadable {
            mode: m.mode_label(),
            path: m.path,
        });
    }
    let target = Path::new(CANDIDATES[0]);
    // The source names this process: a mount left by a zc-trace killed with SIGKILL is then
    // provably its own (`zc-trace cleanup`).
    nix::mount::mount(
        Some(crate::resources::names::tracefs_source().as_str()),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| EnvError::Tracefs {
        reason: e.desc().to_string(),
    })?;
    let path = target.to_path_buf();
    cleanup::register(format!("tracefs at {}", path.display()), move || {
        if let Err(e) = crate::resources::mounts::unmount_own_tracefs(&path) {
            log::warn!("could not unmount {}: {e}", path.display());
        }
    });
    log::info!("mounted tracefs at {}", target.display());
    find().ok_or_else(|| EnvError::Tracefs {
        reason: "mounted, but no events directory appeared".into(),
    })
}

/// A tracefs mount, whether or not this process may read it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mount {
    pub path: PathBuf,
    /// Permission bits of its root directory, if it can be examined.
    pub mode: Option<u32>,
    /// Its root directory's owner.
    pub uid: Option<u32>,
    /// This process can read its events (formats and ids).
    pub readable: bool,
}

impl Mount {
    /// "0700", or "unknown".
    pub fn mode_label(&self) -> String {
        self.mode
            .map_or_else(|| "unknown".into(), |m| format!("{m:04o}"))
    }

    /// It is mounted at one of the paths zc-trace uses.
    pub fn where_zc_trace_looks(&self) -> bool {
        CANDIDATES.iter().any(|c| self.path == Path::new(c))
    }

    /// Only its owner may enter it (tracefs's default mode 0700, owner root).
    pub fn owner_only(&self) -> bool {
        self.mode.is_some_and(|m| m & 0o077 == 0)
    }
}

/// Every tracefs mount (from /proc/self/mountinfo, which anyone may read).
pub fn mounts() -> Vec<Mount> {
    use std::os::unix::fs::MetadataExt;
    crate::kernel::capabilities::mount_points("tracefs")
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            Mount {
                mode: meta.as_ref().map(|m| m.mode() & 0o7777),
                uid: meta.as_ref().map(|m| m.uid()),
                readable: std::fs::read_dir(path.join("events")).is_ok(),
                path,
            }
        })
        .collect()
}

pub fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// One field of a tracepoint's binary record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// The parsed `format` file of one tracepoint.
#[derive(Debug, Clone, Default)]
pub struct EventFormat {
    fields: Vec<(String, Field)>,
}

impl EventFormat {
    pub fn read(tracefs: &Path, group: &str, event: &str) -> Result<Self, EnvError> {
        let path = tracefs
            .join("events")
            .join(group)
            .join(event)
            .join("format");
        let text = std::fs::read_to_string(&path).map_err(|source| EnvError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Self::parse(&text))
    }

    /// Parses lines like `\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;`.
    pub fn parse(text: &str) -> Self {
        let mut fields = Vec::new();
        for line in text.lines() {
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for part in line.split(';').map(str::trim) {
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d);
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.parse().ok();
                } else if let Some(s) = part.strip_prefix("size:") {
                    size = s.parse().ok();
                }
            }
            if let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) {
                // The name is the last identifier of the declaration, before any array suffix.
                let name = decl
                    .split_whitespace()
                    .last()
                    .unwrap_or("")
                    .split('[')
                    .next()
                    .unwrap_or("");
                fields.push((name.to_string(), Field { offset, size }));
            }
        }
        EventFormat { fields }
    }

    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, f)| *f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED_SWITCH: &str = "name: sched_switch
ID: 318
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;

print fmt: \"prev_comm=%s prev_pid=%d\", REC->prev_comm, REC->prev_pid
";

    #[test]
    fn parses_offsets_sizes_and_array_names() {
        let f = EventFormat::parse(SCHED_SWITCH);
        assert_eq!(
            f.field("prev_pid"),
            Some(Field {
                offset: 24,
                size: 4
            })
        );
        assert_eq!(
            f.field("prev_state"),
            Some(Field {
                offset: 32,
                size: 8
            })
        );
        assert_eq!(
            f.field("prev_comm"),
            Some(Field {
                offset: 8,
                size: 16
            })
        );
        assert_eq!(
            f.field("args"),
            Some(Field {
                offset: 16,
                size: 48
            })
        );
        assert_eq!(f.field("common_type"), Some(Field { offset: 0, size: 2 }));
        assert_eq!(f.field("next_pid"), None);
    }

    #[test]
    fn garbage_gives_no_fields() {
        assert_eq!(EventFormat::parse("nonsense\n\n").field("x"), None);
    }
}
