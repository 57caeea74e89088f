//! Mounts: reading mountinfo (its paths decoded), and unmounting only what zc-trace mounted,
//! never through a symlink: a tracefs of its own, a named network namespace (a bind mount of
//! an nsfs file in /run/netns).

use std::path::{Path, PathBuf};

use crate::resources::names::tracefs_source;

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
pub struct Mount {
    pub id: i32,
    pub parent: i32,
    pub point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// This process's mounts, from /proc/self/mountinfo.
pub fn this_process() -> Result<Vec<Mount>, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    Ok(mounts(&mountinfo))
}

/// The mounts of a mountinfo text. procfs splits the fields; it leaves the octal escapes of
/// paths (a space is `\040`) in, so they are decoded here.
pub fn mounts(mountinfo: &str) -> Vec<Mount> {
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
pub fn top_mount_at<'a>(all: &'a [Mount], point: &Path) -> Option<&'a Mount> {
    let at: Vec<&Mount> = all.iter().filter(|m| m.point == point).collect();
    at.iter()
        .find(|m| !at.iter().any(|o| o.parent == m.id))
        .copied()
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
    let all = this_process()?;
    match top_mount_at(&all, path) {
        Some(m) if m.fs_type == "tracefs" && m.source == tracefs_source() => unmount(path),
        Some(_) => Err("another mount is on top of zc-trace's there now; left mounted".into()),
        None => Ok(()),
    }
}

/// Deletes a named network namespace as `ip netns del` does: detach its bind mount, remove
/// the file (its veth end goes with the namespace). No `ip` needed. A file that is not a
/// mount (a namespace whose making was cut short) is removed all the same.
pub fn delete_netns(path: &Path) -> Result<(), String> {
    // Not through a symlink: only the namespace's own bind mount at this very path.
    let _ = unmount(path);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn mountinfo_lines_give_mounts_with_their_paths_decoded() {
        let all = mounts(
            "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
36 22 0:12 / /sys/kernel/tracing rw,relatime shared:14 - tracefs tracefs rw
90 22 0:12 / /mnt/my\\040trace rw - tracefs zc-trace-42 rw
not a mountinfo line
",
        );
        let shown: Vec<_> = all
            .iter()
            .map(|m| {
                (
                    m.id,
                    m.parent,
                    m.point.to_str().unwrap(),
                    &*m.fs_type,
                    &*m.source,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (22, 1, "/sys", "sysfs", "sysfs"),
                (36, 22, "/sys/kernel/tracing", "tracefs", "tracefs"),
                (90, 22, "/mnt/my trace", "tracefs", "zc-trace-42"),
            ]
        );
    }
}
