//! The guest's userland: a static zc-trace, a static busybox and an /init that runs the host's
//! commands, all in one initramfs (newc cpio, gzip).
//!
//! /init prints each command's output on the serial console between marker lines:
//!
//! ```text
//! @@ZC-READY up=<guest uptime s> kernel=<uname -r> var_tmp=<ext4|tmpfs>@@
//! @@ZC-BEGIN <id>@@            stdout of command <id>, plus one newline
//! @@ZC-END <id> rc=<exit status>@@
//! @@ZC-STDERR-BEGIN <id>@@     stderr of command <id>, plus one newline
//! @@ZC-STDERR-END <id>@@
//! @@ZC-TIME <id> start=<uptime s> end=<uptime s>@@
//! @@ZC-DMESG-BEGIN@@         the kernel log, plus one newline
//! @@ZC-DMESG-END@@
//! @@ZC-DONE@@
//! ```
//!
//! and then powers the VM off.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::util::{command, output, run, workspace_root, Result};

use super::arch::GuestArch;
use super::disk::{Module, VarTmp};
use super::tools::Tools;

/// Builds zc-trace as a static executable for `arch` (once per process and architecture) and
/// returns its path.
pub fn zc_trace_binary(arch: GuestArch) -> Result<PathBuf> {
    static BUILT: std::sync::Mutex<Vec<(GuestArch, Result<PathBuf>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, r)) = built.iter().find(|(a, _)| *a == arch) {
        return r.clone();
    }
    let result = (|| {
        cargo_static(arch, &["build", "-p", "zc-trace"])?;
        let bin = super::vm_dir()
            .join("build")
            .join(arch.rust_target())
            .join("release")
            .join("zc-trace");
        check_static(&bin)?;
        Ok(bin)
    })();
    built.push((arch, result.clone()));
    result
}

/// Builds the integration test `test` of zc-trace as a static executable for `arch` (once per
/// process, test and architecture) and returns its path, for running inside the guests.
pub fn guest_test_binary(test: &'static str, arch: GuestArch) -> Result<PathBuf> {
    static BUILT: std::sync::Mutex<Vec<(&'static str, GuestArch, Result<PathBuf>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, r)) = built.iter().find(|(t, a, _)| *t == test && *a == arch) {
        return r.clone();
    }
    let result = (|| {
        let json = cargo_static(
            arch,
            &[
                "test",
                "--no-run",
                "-p",
                "zc-trace",
                "--test",
                test,
                "--message-format=json",
            ],
        )?;
        let bin = test_executable(&json, test)
            .ok_or_else(|| format!("cargo test --no-run named no executable for {test}"))?;
        check_static(&bin)?;
        Ok(bin)
    })();
    built.push((test, arch, result.clone()));
    result
}

/// zc-trace/tests/programs/`name`.c, compiled static for `arch` into target/vm/build/<arch>,
/// for the guests: with the C compiler Rust links with for x86_64, with Debian's cross
/// compiler (`arm64`) for arm64.
pub fn static_c_program(name: &str, arch: GuestArch) -> Result<PathBuf> {
    let src = workspace_root()
        .join("zc-trace/tests/programs")
        .join(format!("{name}.c"));
    let dir = super::vm_dir().join("build").join(arch.debian());
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join(name);
    // Compiled beside it and renamed into place: cells of the parallel matrix build it at the
    // same time, and one must never read another's half-written file.
    let partial = dir.join(format!("{name}.{}.partial", std::process::id()));
    let mut cc = match arch {
        GuestArch::Amd64 => command("cc"),
        GuestArch::Arm64 => super::arm64::Arm64::ensure()?.cc()?,
    };
    run(cc
        .args(["-O2", "-static", "-pthread", "-Wall", "-o"])
        .arg(&partial)
        .arg(&src))?;
    check_static(&partial)?;
    std::fs::rename(&partial, &out)
        .map_err(|e| format!("{} -> {}: {e}", partial.display(), out.display()))?;
    Ok(out)
}

/// The executable of integration test `test` in cargo's JSON messages.
fn test_executable(json: &str, test: &str) -> Option<PathBuf> {
    json.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == test)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// `cargo <args> --release --target <arch's target>` with static linking, in
/// `target/vm/build`; returns stdout.
fn cargo_static(arch: GuestArch, args: &[&str]) -> Result<String> {
    let target_dir = super::vm_dir().join("build");
    let mut cmd = command("cargo");
    cmd.current_dir(workspace_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(args)
        .args(["--release", "--target", arch.rust_target(), "--target-dir"])
        .arg(&target_dir)
        .stderr(std::process::Stdio::inherit());
    eprintln!("xtask: running {cmd:?}");
    output(&mut cmd)
}

/// Fails unless `path` is an executable that needs no dynamic loader.
pub fn check_static(path: &Path) -> Result {
    if has_interpreter(path)? {
        return Err(format!(
            "{} has a PT_INTERP program header: it is not static and cannot run in the \
             initramfs (build it with RUSTFLAGS=\"-C target-feature=+crt-static\")",
            path.display()
        ));
    }
    Ok(())
}

/// Whether the ELF64 executable at `path` asks for a dynamic loader (has PT_INTERP).
fn has_interpreter(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = || format!("{}: not a little-endian ELF64 file", path.display());
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let p_type = elf
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(bad)?;
        if p_type == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Builds `target/vm/initramfs/<tag>.cpio.gz` with `binaries` (path, name in /bin), whose /init loads `modules` (in order), mounts
/// /var/tmp as asked and runs `commands` (each a /bin/sh snippet, run in a subshell with stdin
/// from /dev/null and cwd /tmp).
// One call site (`boot`); a struct of these would only be unpacked again here.
#[allow(clippy::too_many_arguments)]
pub fn build(
    tools: &Tools,
    arch: GuestArch,
    tag: &str,
    binaries: &[(&Path, &str)],
    trees: &[(PathBuf, &str)],
    commands: &[&str],
    modules: &[Module],
    var_tmp: VarTmp,
) -> Result<PathBuf> {
    let dir = super::vm_dir().join("initramfs");
    let staging = dir.join(format!("{tag}.root"));
    let _ = std::fs::remove_dir_all(&staging);
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "var/tmp", "etc",
        "root", "run",
    ] {
        mkdir(&staging.join(d))?;
    }

    let busybox = match arch {
        GuestArch::Amd64 => tools.busybox(),
        GuestArch::Arm64 => super::arm64::Arm64::ensure()?.busybox(),
    };
    copy_executable(&busybox, &staging.join("bin/busybox"))?;
    for (from, name) in binaries {
        copy_executable(from, &staging.join("bin").join(name))?;
    }
    for (from, to) in trees {
        let dest = staging.join(to);
        if let Some(parent) = dest.parent() {
            mkdir(parent)?;
        }
        run(command("cp").arg("-a").arg(from).arg(&dest))?;
    }
    // Every applet as a symlink to /bin/busybox, where busybox would install it. The list is
    // the host's busybox's: the same Debian release's busybox-static, built with the same
    // applets for every architecture (an arm64 one cannot run here to say).
    let applets = output(std::process::Command::new(tools.busybox()).arg("--list-full"))?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let link = staging.join(applet);
        if link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            mkdir(parent)?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link)
            .map_err(|e| format!("{}: {e}", link.display()))?;
    }
    // The kernel opens /dev/console for init before anything is mounted. Without the node the
    // kernel warns and /init redirects its output itself once devtmpfs is mounted.
    let console = staging.join("dev/console");
    if run(command("mknod").arg(&console).args(["c", "5", "1"])).is_err() {
        eprintln!(
            "xtask: cannot create {} (not root?); /init will open it",
            console.display()
        );
    }
    std::fs::write(
        staging.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .map_err(|e| format!("{}: {e}", staging.display()))?;
    std::fs::write(staging.join("etc/group"), "root:x:0:\n")
        .map_err(|e| format!("{}: {e}", staging.display()))?;

    if !modules.is_empty() {
        let dir = staging.join("lib/modules/zc");
        mkdir(&dir)?;
        for (i, m) in modules.iter().enumerate() {
            let path = dir.join(format!("{i:02}-{}.ko", m.name));
            std::fs::write(&path, &m.image).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }

    let init = staging.join("init");
    std::fs::write(&init, init_script(commands, var_tmp))
        .map_err(|e| format!("{}: {e}", init.display()))?;
    set_mode(&init, 0o755)?;

    let cpio = dir.join(format!("{tag}.cpio.gz"));
    // The unpacked cpio, through the unpacked loader: a shell variable carries the command.
    let cpio_cmd = tools.command("cpio")?;
    let cpio_argv: Vec<String> = std::iter::once(cpio_cmd.get_program())
        .chain(cpio_cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    run(command("bash")
        .args([
            "-c",
            "set -o pipefail; out=\"$1\"; dir=\"$2\"; shift 2; cd \"$dir\" && find . -print0 \
             | LC_ALL=C sort -z | \"$@\" --null --create --format=newc --owner=0:0 --quiet \
             | gzip -1 -n > \"$out\"",
            "bash",
        ])
        .arg(&cpio)
        .arg(&staging)
        .args(&cpio_argv))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(cpio)
}

fn copy_executable(from: &Path, to: &Path) -> Result {
    std::fs::copy(from, to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    set_mode(to, 0o755)
}

fn set_mode(path: &Path, mode: u32) -> Result {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn init_script(commands: &[&str], var_tmp: VarTmp) -> String {
    let mut s = format!("#!/bin/sh\nVAR_TMP={}\n", var_tmp.name());
    s.push_str(
        r#"# Generated by `cargo xtask vm-test` (xtask/src/vm/initramfs.rs).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing || echo "init: cannot mount tracefs"
mount -t debugfs debugfs /sys/kernel/debug || echo "init: cannot mount debugfs"
mount -t tmpfs -o mode=1777 tmpfs /tmp
# Keep kernel messages off the console: they would land inside command output.
dmesg -n 1
for m in /lib/modules/zc/*.ko; do
    [ -e "$m" ] && { insmod "$m" || echo "init: insmod $m failed"; }
done
# /var/tmp: the disk (/dev/vda) with the file system asked for, or tmpfs. A mount that fails
# is reported as var_tmp=failed-<fs> (the harness fails on it), never replaced by another.
if [ "$VAR_TMP" = tmpfs ]; then
    mount -t tmpfs -o mode=1777 tmpfs /var/tmp || VAR_TMP=failed-tmpfs
else
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if mount -t "$VAR_TMP" /dev/vda /var/tmp; then
        chmod 1777 /var/tmp
    else
        echo "init: cannot mount /dev/vda ($VAR_TMP) on /var/tmp"
        VAR_TMP=failed-$VAR_TMP
    fi
fi
ip link set lo up || echo "init: cannot bring lo up"
uptime_s() { cut -d' ' -f1 /proc/uptime; }
echo "@@ZC-READY up=$(uptime_s) kernel=$(uname -r) var_tmp=$VAR_TMP@@"
"#,
    );
    for (id, cmd) in commands.iter().enumerate() {
        let _ = write!(
            s,
            r#"
# command {id}
start=$(uptime_s)
(
cd /tmp
{cmd}
) >/tmp/zc-out.{id} 2>/tmp/zc-err.{id} </dev/null
rc=$?
end=$(uptime_s)
echo "@@ZC-BEGIN {id}@@"
cat /tmp/zc-out.{id}; echo
echo "@@ZC-END {id} rc=$rc@@"
echo "@@ZC-STDERR-BEGIN {id}@@"
cat /tmp/zc-err.{id}; echo
echo "@@ZC-STDERR-END {id}@@"
echo "@@ZC-TIME {id} start=$start end=$end@@"
"#
        );
    }
    s.push_str(
        "\necho \"@@ZC-DMESG-BEGIN@@\"\ndmesg; echo\necho \"@@ZC-DMESG-END@@\"\n\
         echo \"@@ZC-DONE@@\"\nsync\npoweroff -f\n",
    );
    s
}
