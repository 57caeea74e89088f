//! What the numbers were measured on.

use std::path::Path;

use serde::Serialize;

use crate::util::{command, output, workspace_root};

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub hypervisor: Option<String>,
    pub memory_mib: u64,
    pub date_utc: String,
    pub zc_trace_commit: String,
    pub zc_trace_version: String,
    /// The filesystem of --tmpdir, where the payloads are written.
    pub tmpdir: String,
    /// The attach method of the syscall hooks, and whether fentry/fexit can be used here.
    pub attach: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn cpuinfo_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The filesystem type of `dir`, by statfs magic.
fn fs_type(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: a zeroed statfs is a valid out-parameter; `path` is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    zc_trace_common::filesystems::name(st.f_type as u64)
}

impl Machine {
    pub fn detect(tmpdir: &Path, attach: String) -> Machine {
        let info = read("/proc/cpuinfo");
        let root = workspace_root();
        let git = |args: &[&str]| {
            output(command("git").args(args).current_dir(&root))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let head = git(&["rev-parse", "--short=12", "HEAD"]);
        let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
        Machine {
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu_model: cpuinfo_field(&info, "model name").unwrap_or_else(|| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            hypervisor: info
                .lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
                .then(|| "yes (the hypervisor CPU flag is set): a virtual machine".into()),
            memory_mib: read("/proc/meminfo")
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            date_utc: output(command("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            zc_trace_commit: if dirty {
                format!("{head} with uncommitted changes in tracked files")
            } else {
                head
            },
            zc_trace_version: String::new(),
            tmpdir: format!("{} ({})", tmpdir.display(), fs_type(tmpdir)),
            attach,
        }
    }

    /// (label, value) for the README's machine table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kernel", self.kernel.clone()),
            ("CPU", self.cpu_model.clone()),
            ("CPUs", self.cpus.to_string()),
            (
                "virtual machine",
                self.hypervisor.clone().unwrap_or_else(|| "no".into()),
            ),
            ("memory", format!("{} MiB", self.memory_mib)),
            ("date", self.date_utc.clone()),
            (
                "zc-trace",
                format!(
                    "{} (commit {})",
                    self.zc_trace_version, self.zc_trace_commit
                ),
            ),
            ("payload directory", self.tmpdir.clone()),
            ("attach methods", self.attach.clone()),
        ]
    }
}
