//! What this host can do, detected at run time, with the reason when it cannot (in the spirit
//! of lightswitch's kernel-feature checks). Nothing here loads eBPF; it reads /proc and /sys.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::EnvError;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

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

/// Names of the capabilities missing for loading tracing programs, given /proc/self/status.
/// CAP_SYS_ADMIN stands in for both on kernels before 5.8, as it does in the kernel.
pub fn missing_capabilities(proc_status: &str) -> Vec<&'static str> {
    let eff = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
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
    fn missing_btf_is_explained() {
        let f = HostFacts::detect_at(Path::new("/nonexistent/vmlinux"));
        assert!(f.btf.is_none());
        assert!(f.btf_note.unwrap().contains("CONFIG_DEBUG_INFO_BTF"));
    }
}
