//! What this host can do, detected at run time, with the reason when it cannot (in the spirit
//! of lightswitch's kernel-feature checks). Nothing here loads eBPF; it reads /proc and /sys.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::EnvError;

const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The kprobe PMU: absent when the kernel is built without kprobes (CONFIG_KPROBES off).
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// Facts about the host that the report shows next to the figures.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub kernel: String,
    pub arch: String,
    /// Path of the kernel's BTF, if it has one.
    pub btf: Option<PathBuf>,
    /// Why BTF-based attach methods (fentry/fexit, tp_btf) cannot be used, if they cannot.
    pub btf_note: Option<String>,
}

impl HostFacts {
    pub fn detect() -> Self {
        Self::detect_at(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn detect_at(btf_path: &Path) -> Self {
        let uts = nix::sys::utsname::uname().ok();
        let kernel = uts
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|| "unknown".into());
        let arch = uts
            .as_ref()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_else(|| std::env::consts::ARCH.into());
        let (btf, btf_note) = if btf_path.is_file() {
            (Some(btf_path.to_path_buf()), None)
        } else {
            (
                None,
                Some(format!(
                    "no kernel BTF at {}: fentry/fexit and tp_btf hooks are unavailable, \
                     classic tracepoints are used instead (a kernel built with \
                     CONFIG_DEBUG_INFO_BTF=y provides it)",
                    btf_path.display()
                )),
            )
        };
        HostFacts {
            kernel,
            arch,
            btf,
            btf_note,
        }
    }
}

/// Fails with one line naming the missing capabilities unless the process can load and attach
/// tracing eBPF programs.
pub fn check_privileges() -> Result<(), EnvError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|source| EnvError::Read {
        path: "/proc/self/status".into(),
        source,
    })?;
    let missing = missing_capabilities(&status);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(EnvError::Privileges {
            missing: missing.join(" and "),
        })
    }
}

/// The effective capability set, given /proc/self/status (none when it cannot be read).
fn effective_capabilities(proc_status: &str) -> u64 {
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// Names of the capabilities missing for loading tracing programs, given /proc/self/status.
/// CAP_SYS_ADMIN stands in for both on kernels before 5.8, as it does in the kernel.
pub fn missing_capabilities(proc_status: &str) -> Vec<&'static str> {
    let eff = effective_capabilities(proc_status);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// What this process may do beyond the pass/fail of `check_privileges` (`zc-trace doctor`):
/// loading the programs takes CAP_BPF and CAP_PERFMON, but zc-trace also reads tracepoint
/// formats and ids from tracefs, which is usually mounted mode 0700 (root only), and mounts
/// tracefs itself where it is not mounted.
#[derive(Debug, Clone, Serialize)]
pub struct Privileges {
    pub euid: u32,
    /// Missing to load and attach tracing programs (empty: enough).
    pub missing: Vec<&'static str>,
    /// CAP_SYS_ADMIN: mounting tracefs, the veth sink's network namespaces.
    pub sys_admin: bool,
    /// CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE: reading a tracefs only root may read.
    pub dac_read: bool,
    /// CAP_NET_ADMIN: the veth sink's devices, --no-sg.
    pub net_admin: bool,
}

impl Privileges {
    pub fn detect() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self::from_status(&status, nix::unistd::geteuid().as_raw())
    }

    pub fn from_status(proc_status: &str, euid: u32) -> Self {
        let eff = effective_capabilities(proc_status);
        let has = |bit: u32| eff & (1u64 << bit) != 0;
        Privileges {
            euid,
            missing: missing_capabilities(proc_status),
            sys_admin: has(CAP_SYS_ADMIN),
            dac_read: has(CAP_DAC_READ_SEARCH) || has(CAP_DAC_OVERRIDE),
            net_admin: has(CAP_NET_ADMIN),
        }
    }

    /// Every capability zc-trace uses, whatever the options.
    pub fn all(&self) -> bool {
        self.missing.is_empty() && self.sys_admin && self.dac_read && self.net_admin
    }
}

/// Whether the kernel has kprobes (its kprobe PMU is listed in sysfs).
pub fn kprobes_available() -> bool {
    Path::new(KPROBE_PMU).exists()
}

/// A kernel sysctl (`/proc/sys/kernel/NAME`), if this kernel has it.
pub fn kernel_sysctl(name: &str) -> Option<i64> {
    std::fs::read_to_string(Path::new("/proc/sys/kernel").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The mount points of every filesystem of type `fstype`, from /proc/self/mountinfo (which
/// anyone may read, unlike some of the mount points).
pub fn mount_points(fstype: &str) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_points_in(&mountinfo, fstype)
}

fn mount_points_in(mountinfo: &str, fstype: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "36 35 0:12 / /sys/kernel/tracing rw,relatime shared:14 - tracefs tracefs rw"
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            (right.split(' ').next()? == fstype).then(|| PathBuf::from(unescape_octal(point)))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in a path as \040, \011, \012, \134.
fn unescape_octal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The kernel's lockdown state, from securityfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lockdown {
    /// none, integrity or confidentiality.
    Mode(String),
    /// securityfs is mounted and has no lockdown file: the kernel has no lockdown LSM.
    NoLsm,
    /// It cannot be known here: why.
    Unknown(String),
}

pub const SECURITYFS: &str = "/sys/kernel/security";

pub fn lockdown() -> Lockdown {
    let path = Path::new(SECURITYFS).join("lockdown");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_lockdown(&text).map_or_else(
            || Lockdown::Unknown(format!("{} reads {:?}", path.display(), text.trim())),
            Lockdown::Mode,
        ),
        Err(_)
            if !mount_points("securityfs")
                .iter()
                .any(|p| p == Path::new(SECURITYFS)) =>
        {
            Lockdown::Unknown(format!("securityfs is not mounted at {SECURITYFS}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lockdown::NoLsm,
        Err(e) => Lockdown::Unknown(format!("cannot read {}: {e}", path.display())),
    }
}

/// The selected mode of "none [integrity] confidentiality".
fn parse_lockdown(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .map(str::to_string)
}

/// Whether the kernel has the function tracer (tracefs lists it in available_tracers), which
/// fentry/fexit's trampolines are built on; None when tracefs cannot be read.
pub fn function_tracer(tracefs: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(tracefs.join("available_tracers")).ok()?;
    Some(text.split_whitespace().any(|t| t == "function"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(capeff: &str) -> String {
        format!("Name:\tzc-trace\nCapInh:\t0000000000000000\nCapEff:\t{capeff}\n")
    }

    #[test]
    fn root_has_everything() {
        assert!(missing_capabilities(&status("000001ffffffffff")).is_empty());
    }

    #[test]
    fn bpf_and_perfmon_suffice_without_sys_admin() {
        let bits = (1u64 << CAP_BPF) | (1u64 << CAP_PERFMON);
        assert!(missing_capabilities(&status(&format!("{bits:016x}"))).is_empty());
    }

    #[test]
    fn an_ordinary_user_misses_both() {
        assert_eq!(
            missing_capabilities(&status("0000000000000000")),
            ["CAP_BPF", "CAP_PERFMON"]
        );
        let only_bpf = 1u64 << CAP_BPF;
        assert_eq!(
            missing_capabilities(&status(&format!("{only_bpf:016x}"))),
            ["CAP_PERFMON"]
        );
    }

    #[test]
    fn privileges_tell_the_capabilities_beyond_loading() {
        let root = Privileges::from_status(&status("000001ffffffffff"), 0);
        assert!(root.all());
        let bits = (1u64 << CAP_BPF) | (1u64 << CAP_PERFMON);
        let p = Privileges::from_status(&status(&format!("{bits:016x}")), 1000);
        assert!(p.missing.is_empty() && !p.dac_read && !p.sys_admin && !p.all());
        let bits = bits | (1u64 << CAP_DAC_READ_SEARCH);
        assert!(Privileges::from_status(&status(&format!("{bits:016x}")), 1000).dac_read);
        let nobody = Privileges::from_status(&status("0000000000000000"), 65534);
        assert_eq!(nobody.missing, ["CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn mountinfo_gives_mount_points_by_type_unescaped() {
        let mountinfo = "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
36 22 0:12 / /sys/kernel/tracing rw,relatime shared:14 - tracefs tracefs rw
90 22 0:12 / /mnt/my\\040trace rw - tracefs zc-trace-42 rw
37 22 0:13 / /sys/kernel/security rw - securityfs securityfs rw
";
        assert_eq!(
            mount_points_in(mountinfo, "tracefs"),
            [
                PathBuf::from("/sys/kernel/tracing"),
                PathBuf::from("/mnt/my trace")
            ]
        );
        assert_eq!(
            mount_points_in(mountinfo, "securityfs"),
            [PathBuf::from("/sys/kernel/security")]
        );
        assert!(mount_points_in(mountinfo, "debugfs").is_empty());
        assert_eq!(unescape_octal("a\\134b\\x"), "a\\b\\x");
    }

    #[test]
    fn lockdown_mode_is_the_bracketed_one() {
        assert_eq!(
            parse_lockdown("none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
        assert_eq!(
            parse_lockdown("[none] integrity confidentiality").as_deref(),
            Some("none")
        );
        assert_eq!(parse_lockdown("none integrity"), None);
    }

    #[test]
    fn missing_btf_is_explained() {
        let f = HostFacts::detect_at(Path::new("/nonexistent/vmlinux"));
        assert!(f.btf.is_none());
        assert!(f.btf_note.unwrap().contains("CONFIG_DEBUG_INFO_BTF"));
    }
}
