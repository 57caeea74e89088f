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

/// The oldest kernel zc-trace supports: Debian 11's 5.10 LTS, the oldest the VM matrix boots.
/// An older one is refused rather than reported on with kernel structures and hooks that no
/// test has seen.
pub const OLDEST_KERNEL: (u8, u8) = (5, 10);

/// Refuses a kernel older than [`OLDEST_KERNEL`] (aya reads the version as the kernel states
/// it, Debian's and Ubuntu's own numbering included). An unreadable version is let through:
/// the load then says what is wrong.
pub fn check_kernel(release: &str) -> Result<(), EnvError> {
    let Ok(version) = aya::util::KernelVersion::current() else {
        return Ok(());
    };
    let (major, minor) = OLDEST_KERNEL;
    if version >= aya::util::KernelVersion::new(major, minor, 0) {
        return Ok(());
    }
    Err(EnvError::KernelTooOld {
        release: release.to_string(),
        oldest: format!("{major}.{minor}"),
    })
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
    let missing = missing_capabilities(effective_capabilities()?);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(EnvError::Privileges {
            missing: missing.join(" and "),
        })
    }
}

/// The effective capability set, from /proc/self/status.
fn effective_capabilities() -> Result<u64, EnvError> {
    procfs::process::Process::myself()
        .and_then(|p| p.status())
        .map(|s| s.capeff)
        .map_err(|e| EnvError::Read {
            path: "/proc/self/status".into(),
            source: std::io::Error::other(e),
        })
}

/// Names of the capabilities missing for loading tracing programs, given the effective set.
/// CAP_SYS_ADMIN stands in for both on kernels before 5.8, as it does in the kernel.
pub fn missing_capabilities(eff: u64) -> Vec<&'static str> {
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
        // Unreadable, it is an empty set: doctor then says what is missing.
        let eff = effective_capabilities().unwrap_or(0);
        Self::from_effective(eff, nix::unistd::geteuid().as_raw())
    }

    /// Given the effective capability set and the effective uid.
    pub fn from_effective(eff: u64, euid: u32) -> Self {
        let has = |bit: u32| eff & (1u64 << bit) != 0;
        Privileges {
            euid,
            missing: missing_capabilities(eff),
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
    crate::resources::mounts::this_process()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.fs_type == fstype)
        .map(|m| m.point)
        .collect()
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

    const ALL: u64 = 0x0000_01ff_ffff_ffff;

    #[test]
    fn root_has_everything() {
        assert!(missing_capabilities(ALL).is_empty());
    }

    #[test]
    fn bpf_and_perfmon_suffice_without_sys_admin() {
        let bits = (1u64 << CAP_BPF) | (1u64 << CAP_PERFMON);
        assert!(missing_capabilities(bits).is_empty());
    }

    #[test]
    fn an_ordinary_user_misses_both() {
        assert_eq!(missing_capabilities(0), ["CAP_BPF", "CAP_PERFMON"]);
        let only_bpf = 1u64 << CAP_BPF;
        assert_eq!(missing_capabilities(only_bpf), ["CAP_PERFMON"]);
    }

    #[test]
    fn privileges_tell_the_capabilities_beyond_loading() {
        let root = Privileges::from_effective(ALL, 0);
        assert!(root.all());
        let bits = (1u64 << CAP_BPF) | (1u64 << CAP_PERFMON);
        let p = Privileges::from_effective(bits, 1000);
        assert!(p.missing.is_empty() && !p.dac_read && !p.sys_admin && !p.all());
        let bits = bits | (1u64 << CAP_DAC_READ_SEARCH);
        assert!(Privileges::from_effective(bits, 1000).dac_read);
        let nobody = Privileges::from_effective(0, 65534);
        assert_eq!(nobody.missing, ["CAP_BPF", "CAP_PERFMON"]);
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
