//! `cargo xtask vm-test`: runs zc-trace inside qemu VMs on other kernels (Debian kernels,
//! fetched with apt) and checks what it reports there.
//!
//! The host is not changed: no package is installed and the host's apt configuration is only
//! read. Everything is fetched into and cached under `target/vm/`:
//! - `apt/<state>/`: private apt states (sources list, lists, archive cache, empty status);
//! - `tools/root/`: qemu, busybox, cpio, mkfs and xz unpacked from Debian packages (`tools`);
//! - `kernels/<name>/`: the unpacked kernel packages (`root/`) and `package`, the exact
//!   `package=version` specs fetched;
//! - `build/`: the static zc-trace build;
//! - `initramfs/<kernel>.cpio.gz`: the last initramfs booted on that kernel;
//! - `disks/<kernel>.img`: the image of the guest's /var/tmp (made afresh each boot);
//! - `logs/<kernel>.log`: the last serial console of that kernel.
//!
//! Host-side code can run anything in a guest with [`run_in_vm`]; `check` is what `vm-test`
//! runs there: zc-trace's own kernel-matrix test binary, which asserts
//! `zc-trace/tests/data/kernel-matrix.toml` inside the guest. The kernels come from the Debian
//! archives this machine's apt already uses (`apt`).

mod arch;
mod arm64;
mod check;
mod disk;
mod initramfs;
mod kernels;
mod qemu;
pub mod tools;

use std::path::PathBuf;
use std::time::Duration;

use crate::util::{workspace_root, Result};

pub use disk::VarTmp;
pub use kernels::Kernel;
use tools::Tools;

/// Where the harness keeps everything it downloads and builds.
pub fn vm_dir() -> PathBuf {
    workspace_root().join("target").join("vm")
}

#[derive(clap::Args)]
pub struct VmTestArgs {
    /// Kernel to boot (repeat for several); default: every kernel of the matrix file. See
    /// --list.
    #[arg(long = "kernel", value_name = "NAME")]
    kernels: Vec<String>,
    /// List the known kernels (and whether they are cached), then exit.
    #[arg(long)]
    list: bool,
    /// Seconds a VM may run before it is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 240)]
    timeout: u64,
    /// Copy the guest's serial console to stderr while it runs.
    #[arg(long)]
    console: bool,
    /// Boot this zc-trace executable (it must be static) instead of building one from the
    /// workspace.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// File system of the guest's /var/tmp, where zc-trace puts its payload; default: the
    /// matrix boots each kernel once per file system (ext4, tmpfs, xfs, btrfs), `--exec` uses
    /// ext4.
    #[arg(long, value_enum)]
    var_tmp: Option<VarTmp>,
    /// Instead of the checks, run this shell command in each VM and print its output (repeat
    /// for several; zc-trace is /bin/zc-trace). Fails if one exits non-zero.
    #[arg(long, value_name = "COMMAND")]
    exec: Vec<String>,
    /// Internal: run as one cell of a parent `vm-test` that runs cells in parallel, and write
    /// the cell's outcome (JSON) here instead of printing the summary.
    #[arg(long, value_name = "PATH", hide = true)]
    cell_result: Option<PathBuf>,
}

/// One command run in the guest.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The command, as given.
    pub command: String,
    /// Its exit status in the guest (the shell's: 128+N when killed by signal N).
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
    /// Its duration in the guest, from /proc/uptime (10 ms resolution).
    pub seconds: Option<f64>,
}

/// Everything about one boot.
#[derive(Debug, Clone)]
pub struct VmRun {
    /// The package the kernel came from ("linux-image-...-unsigned=6.1.192-2").
    pub package: String,
    /// `uname -r` in the guest.
    pub release: String,
    /// What /var/tmp is in the guest ("ext4" or "tmpfs", as /init reports it).
    pub var_tmp: String,
    /// Guest uptime when /init was ready to run the first command.
    pub boot_seconds: Option<f64>,
    /// Host wall time of the whole VM (qemu start to power-off).
    pub wall: Duration,
    pub outputs: Vec<CommandOutput>,
    /// The guest's kernel log after the last command (empty if /init did not get there).
    pub dmesg: String,
    /// The serial console log on the host.
    pub log: PathBuf,
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct VmOptions {
    pub timeout: Duration,
    /// Copy the serial console to stderr while it runs.
    pub echo_console: bool,
    pub var_tmp: VarTmp,
    /// A static zc-trace to use instead of building the workspace's.
    pub binary: Option<PathBuf>,
    /// More static executables for the guest's /bin: (path on the host, name).
    pub binaries: Vec<(PathBuf, &'static str)>,
    /// Folders copied whole into the guest: (path on the host, path in the guest, relative).
    pub trees: Vec<(PathBuf, &'static str)>,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            timeout: Duration::from_secs(240),
            echo_console: false,
            var_tmp: VarTmp::Ext4,
            binary: None,
            binaries: Vec::new(),
            trees: Vec::new(),
        }
    }
}

/// Boots `kernel` with an initramfs holding a static zc-trace (`/bin/zc-trace`) and busybox,
/// runs `commands` in order (each a `/bin/sh` snippet, cwd /tmp, stdin /dev/null), powers off
/// and returns each command's exit status and output. Installs host tools, fetches the kernel
/// and builds zc-trace first where needed.
// The entry point for host-side assertions; `vm-test` itself uses `boot` for the timings.
#[allow(dead_code)]
pub fn run_in_vm(kernel: &Kernel, commands: &[&str]) -> Result<Vec<CommandOutput>> {
    Ok(boot(kernel, commands, &VmOptions::default())?.outputs)
}

/// [`run_in_vm`], with options and every detail of the boot.
pub fn boot(kernel: &Kernel, commands: &[&str], options: &VmOptions) -> Result<VmRun> {
    let tools = Tools::ensure()?;
    let fetched = kernels::ensure(kernel)?;
    let zc_trace = zc_trace_binary(options, kernel.arch)?;
    let modules = disk::modules_for(&tools, &fetched, options.var_tmp)?;
    let disk = match options.var_tmp {
        VarTmp::Tmpfs => None,
        fs => {
            let image = vm_dir().join("disks").join(format!("{}.img", kernel.name));
            disk::make_image(&tools, fs, &fetched.release, &image)?;
            Some(image)
        }
    };
    let mut binaries = vec![(zc_trace.as_path(), "zc-trace")];
    binaries.extend(options.binaries.iter().map(|(p, n)| (p.as_path(), *n)));
    let initrd = initramfs::build(
        &tools,
        kernel.arch,
        &kernel.name,
        &binaries,
        &options.trees,
        commands,
        &modules,
        options.var_tmp,
    )?;
    let logs = vm_dir().join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let log = logs.join(format!("{}.log", kernel.name));

    let booted = qemu::boot(
        qemu::qemu_command(
            &tools,
            kernel.arch,
            &fetched.vmlinuz,
            &initrd,
            disk.as_deref(),
            options.var_tmp.nic_pair(),
        )?,
        options.timeout,
        &log,
        options.echo_console,
    )?;
    let parsed = parse_console(&booted.console, commands);
    let what = format!(
        "{} ({}, console log {})",
        kernel.name,
        fetched.package,
        log.display()
    );
    let (ready, outputs, dmesg) = match parsed {
        Ok(p) => p,
        Err(e) => {
            let why = if booted.timed_out {
                format!("killed after {} s", options.timeout.as_secs())
            } else {
                match booted.exit {
                    Some(s) => format!("qemu exited ({s})"),
                    None => "qemu vanished".into(),
                }
            };
            return Err(format!(
                "VM {what}: {e}; {why}.\n--- qemu stderr ---\n{}\n--- last console lines ---\n{}",
                booted.stderr.trim(),
                tail(&booted.console, 30)
            ));
        }
    };
    if booted.timed_out {
        eprintln!(
            "xtask: warning: VM {what} ran every command but did not power off within {} s",
            options.timeout.as_secs()
        );
    }
    Ok(VmRun {
        package: fetched.package,
        release: ready.field("kernel").unwrap_or(fetched.release),
        var_tmp: ready.field("var_tmp").unwrap_or_else(|| "?".into()),
        boot_seconds: ready.field("up").and_then(|u| u.parse().ok()),
        wall: booted.wall,
        outputs,
        dmesg,
        log,
    })
}

/// The zc-trace executable to boot on an `arch` guest: the one given, else the workspace's,
/// built static.
pub fn zc_trace_binary(options: &VmOptions, arch: arch::GuestArch) -> Result<PathBuf> {
    match &options.binary {
        Some(path) => initramfs::check_static(path).map(|()| path.clone()),
        None => initramfs::zc_trace_binary(arch),
    }
}

/// The fields of the `@@ZC-READY ...@@` line.
struct Ready(String);

impl Ready {
    fn field(&self, key: &str) -> Option<String> {
        self.0
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    }
}

/// The marker on a console line: from `@@ZC-` to the closing `@@`. Terminal control sequences
/// (the firmware clears the screen) may precede it on the line.
fn marker(line: &str) -> Option<&str> {
    let line = line.trim_end();
    let m = &line[line.find("@@ZC-")?..];
    (m.len() > 7 && m.ends_with("@@")).then_some(m)
}

/// The last `n` lines of the console, without terminal control sequences.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| strip_escapes(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drops ESC sequences (`ESC c`, `ESC [ ... letter`) and other control characters.
fn strip_escapes(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next_if_eq(&'[').is_some() {
                while chars.next().is_some_and(|c| !c.is_ascii_alphabetic()) {}
            } else {
                chars.next();
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// Cuts the console into the commands' outputs (see `initramfs` for the markers).
fn parse_console(console: &str, commands: &[&str]) -> Result<(Ready, Vec<CommandOutput>, String)> {
    let lines: Vec<&str> = console.lines().collect();
    let ready = lines
        .iter()
        .find_map(|l| marker(l)?.strip_prefix("@@ZC-READY ")?.strip_suffix("@@"))
        .map(|r| Ready(r.to_string()))
        .ok_or("the guest never reached /init's first command (no @@ZC-READY@@ line)")?;
    // Text between two marker lines. /init prints a newline after the output, so the output
    // is exactly the lines in between joined by newlines.
    let between = |begin: &str, end_prefix: &str| -> Option<(String, String)> {
        let b = lines.iter().position(|l| marker(l) == Some(begin))?;
        let e = b
            + 1
            + lines[b + 1..]
                .iter()
                .position(|l| marker(l).is_some_and(|m| m.starts_with(end_prefix)))?;
        Some((lines[b + 1..e].join("\n"), marker(lines[e])?.to_string()))
    };
    let mut outputs = Vec::new();
    for (id, cmd) in commands.iter().enumerate() {
        let (stdout, end) = between(&format!("@@ZC-BEGIN {id}@@"), &format!("@@ZC-END {id} "))
            .ok_or_else(|| format!("no complete output of command {id} ({cmd:?})"))?;
        let rc = end
            .strip_prefix(&format!("@@ZC-END {id} rc="))
            .and_then(|r| r.strip_suffix("@@"))
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| format!("bad end marker {end:?}"))?;
        let stderr = between(
            &format!("@@ZC-STDERR-BEGIN {id}@@"),
            &format!("@@ZC-STDERR-END {id}@@"),
        )
        .map(|(s, _)| s)
        .unwrap_or_default();
        let seconds = lines.iter().find_map(|l| {
            let t = marker(l)?
                .strip_prefix(&format!("@@ZC-TIME {id} "))?
                .strip_suffix("@@")?;
            let r = Ready(t.to_string());
            let start: f64 = r.field("start")?.parse().ok()?;
            let end: f64 = r.field("end")?.parse().ok()?;
            Some(end - start)
        });
        outputs.push(CommandOutput {
            command: cmd.to_string(),
            rc,
            stdout,
            stderr,
            seconds,
        });
    }
    let dmesg = between("@@ZC-DMESG-BEGIN@@", "@@ZC-DMESG-END@@")
        .map(|(s, _)| s)
        .unwrap_or_default();
    Ok((ready, outputs, dmesg))
}

/// Why the matrix of [`test_matrix`] did not pass.
pub enum MatrixError {
    /// qemu, the host tools or a kernel could not be set up (no apt source, no network...).
    Setup(String),
    /// The VMs ran (or zc-trace did not build, or the expectations are wrong): a real failure.
    Failed(String),
}

/// `vm-test` on every kernel with the default options, for `cargo xtask test`; setting up the
/// tools and the kernels comes first, so that its failure can be told apart.
pub fn test_matrix() -> std::result::Result<(), MatrixError> {
    let kernels = kernels::all().map_err(MatrixError::Failed)?;
    let before = host_package_state();
    Tools::ensure().map_err(MatrixError::Setup)?;
    for k in &kernels {
        kernels::ensure(k).map_err(|e| MatrixError::Setup(format!("kernel {}: {e}", k.name)))?;
    }
    let selected: Vec<&Kernel> = kernels.iter().collect();
    let result = check::vm_test(&selected, VarTmp::ALL, &VmOptions::default(), None)
        .map_err(MatrixError::Failed);
    let changed = changed_files(&before, &host_package_state());
    if !changed.is_empty() {
        return Err(MatrixError::Failed(format!(
            "the VM harness changed the host's package configuration, which it must only read: \
             {}",
            changed.join(", ")
        )));
    }
    result
}

/// The files that say what the host's apt and dpkg are: every file under /etc/apt and the
/// dpkg status database, with their contents.
fn host_package_state() -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &std::path::Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    let mut files = std::collections::BTreeMap::new();
    walk(std::path::Path::new("/etc/apt"), &mut files);
    let status = PathBuf::from("/var/lib/dpkg/status");
    files.insert(status.clone(), std::fs::read(&status).unwrap_or_default());
    files
}

/// Paths added, removed or changed between two [`host_package_state`]s.
fn changed_files(
    before: &std::collections::BTreeMap<PathBuf, Vec<u8>>,
    after: &std::collections::BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| p.display().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The names of the VM kernels of the matrix file.
pub fn kernel_names() -> Result<Vec<String>> {
    Ok(kernels::all()?.into_iter().map(|k| k.name).collect())
}

/// `cargo xtask vm-test`.
pub fn run(args: VmTestArgs) -> Result {
    let kernels = kernels::all()?;
    if args.list {
        for k in &kernels {
            let state = match kernels::cached(k) {
                Some(f) => format!("cached: {}", f.package),
                None => "not fetched yet".into(),
            };
            println!("{:<16} {} ({state})", k.name, k.description);
        }
        return Ok(());
    }
    let selected: Vec<&Kernel> = if args.kernels.is_empty() {
        kernels.iter().collect()
    } else {
        args.kernels
            .iter()
            .map(|n| kernels::by_name(&kernels, n))
            .collect::<Result<_>>()?
    };
    let options = VmOptions {
        timeout: Duration::from_secs(args.timeout),
        echo_console: args.console,
        var_tmp: args.var_tmp.unwrap_or(VarTmp::Ext4),
        binary: args.binary,
        binaries: Vec::new(),
        trees: Vec::new(),
    };
    if args.exec.is_empty() {
        let filesystems = match args.var_tmp {
            Some(fs) => vec![fs],
            None => VarTmp::ALL.to_vec(),
        };
        return check::vm_test(
            &selected,
            &filesystems,
            &options,
            args.cell_result.as_deref(),
        );
    }
    let commands: Vec<&str> = args.exec.iter().map(String::as_str).collect();
    let mut failed = Vec::new();
    for k in selected {
        println!("== {}: {}", k.name, k.description);
        let started = std::time::Instant::now();
        let outputs = boot(k, &commands, &options)?.outputs;
        for o in outputs {
            println!("-- `{}`: exit status {}", o.command, o.rc);
            print!("{}", o.stdout);
            if !o.stderr.trim().is_empty() {
                println!("-- stderr:");
                print!("{}", o.stderr);
            }
            if o.rc != 0 {
                failed.push(format!(
                    "{}: `{}` exited with status {}",
                    k.name, o.command, o.rc
                ));
            }
        }
        println!("-- {:.1} s", started.elapsed().as_secs_f64());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_apt_file_is_named() {
        let mut before = std::collections::BTreeMap::new();
        before.insert(PathBuf::from("/etc/apt/a"), b"x".to_vec());
        before.insert(PathBuf::from("/etc/apt/b"), b"y".to_vec());
        let mut after = before.clone();
        assert!(changed_files(&before, &after).is_empty());
        after.insert(PathBuf::from("/etc/apt/sources.list.d/new.sources"), vec![]);
        after.insert(PathBuf::from("/etc/apt/a"), b"z".to_vec());
        after.remove(&PathBuf::from("/etc/apt/b"));
        assert_eq!(
            changed_files(&before, &after),
            [
                "/etc/apt/a",
                "/etc/apt/b",
                "/etc/apt/sources.list.d/new.sources"
            ]
        );
    }
}
