//! What `vm-test` runs in each VM: zc-trace's own test binary `kernel_matrix`
//! (zc-trace/tests/kernel_matrix.rs), built static and run inside the guest as aya runs its
//! integration tests, so the exact table, the syscall formulas, the attach methods and the
//! function guard are asserted by the same code on the host and on every kernel, from one data
//! file (zc-trace/tests/data/kernel-matrix.toml). The harness adds what only it can see: that
//! the guest's /var/tmp is the file system asked for, and that the guest kernel logged no splat.

use std::path::{Path, PathBuf};

use crate::util::Result;

use super::arch::GuestArch;
use super::{boot, initramfs, Kernel, VarTmp, VmOptions, VmRun};

/// The test binary in the guest's /bin.
const TEST_NAME: &str = "kernel-matrix";
/// The program `zc-trace trace` follows in the tests (zc-trace/tests/programs/xfer.c).
const XFER_NAME: &str = "xfer";
/// The task-following program (zc-trace/tests/programs/tasks.c), under the name its tests'
/// ftrace filter matches.
const TASKS_NAME: &str = "zct-tasks";
/// Also run, for the log: the attach method of every hook, as a table.
const PROBES_COMMAND: &str = "zc-trace probes";

/// The guest command that runs the test binary for `kernel`: CI=true makes a skip a failure.
/// Where the boot has the NIC pair, ZC_TRACE_NICS names it (sender, receiver).
fn test_command(kernel: &str, nic_pair: bool) -> String {
    format!(
        "CI=true ZC_TRACE_KERNEL={kernel} ZC_TRACE_BIN=/bin/zc-trace \
         ZC_TRACE_XFER=/bin/{XFER_NAME} {}RUST_BACKTRACE=0 /bin/{TEST_NAME} --test-threads=1",
        // One file system per kernel is enough for task following: the NIC pair's boots.
        if nic_pair {
            format!("{NICS_VAR}=eth0,eth1 ZC_TRACE_TASKS=/bin/{TASKS_NAME} ")
        } else {
            String::new()
        }
    )
}

/// The second test binary, zc-trace/tests/trace_programs.rs (nginx and strace, unpacked by
/// `trace_tools` and carried into the guest), run on the boots that get the NIC pair.
const PROGRAMS_NAME: &str = "trace-programs";
/// Where the guest finds the unpacked tools.
const TOOLS_IN_GUEST: &str = "opt/trace-tools";

fn programs_command() -> String {
    format!(
        "CI=true ZC_TRACE_BIN=/bin/zc-trace ZC_TRACE_TOOLS=/{TOOLS_IN_GUEST} RUST_BACKTRACE=0 \
         /bin/{PROGRAMS_NAME} --test-threads=1"
    )
}

/// Names the NIC pair for the tests; its test must have run (and passed) where it is set.
const NICS_VAR: &str = "ZC_TRACE_NICS";
const NIC_TEST: &str = "a_nic_pair_reads_every_byte_by_dma_with_and_without_sg";

/// Kernel log lines that mean something went wrong in the kernel (a WARN, BUG or oops splat,
/// e.g. one triggered by an eBPF program or its attachment).
fn kernel_problems(dmesg: &str) -> Vec<&str> {
    const SIGNS: &[&str] = &[
        "WARNING: CPU",
        "BUG:",
        "kernel BUG",
        "Oops",
        "general protection fault",
        "Call Trace:",
        "Kernel panic",
    ];
    dmesg
        .lines()
        .filter(|l| SIGNS.iter().any(|s| l.contains(s)))
        .map(str::trim)
        .collect()
}

fn indented(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| format!("    | {l}\n"))
        .collect()
}

/// Checks one VM run; returns the failures (the caller adds the kernel's name).
fn check_vm(vm: &VmRun, options: &VmOptions) -> Vec<String> {
    let mut failures = Vec::new();
    if vm.var_tmp != options.var_tmp.name() {
        failures.push(format!(
            "/var/tmp is {} in the guest, not {} as asked (see {})",
            vm.var_tmp,
            options.var_tmp.name(),
            vm.log.display()
        ));
    }
    for line in kernel_problems(&vm.dmesg) {
        failures.push(format!("the guest kernel logged: {line}"));
    }
    let tests = &vm.outputs[0];
    print!("  `{}`:\n{}", tests.command, indented(&tests.stdout));
    if !tests.stderr.trim().is_empty() {
        print!("  its stderr:\n{}", indented(&tests.stderr));
    }
    if tests.rc != 0 {
        failures.push(format!(
            "the kernel-matrix tests failed in the guest (exit status {}; output above, \
             serial console {})",
            tests.rc,
            vm.log.display()
        ));
    } else if !tests.stdout.contains("test result: ok.") || tests.stdout.contains("ok. 0 passed") {
        failures.push(format!(
            "the kernel-matrix tests did not report passing tests: {}",
            tests.stdout.trim()
        ));
    }
    if options.var_tmp.nic_pair() && !tests.stdout.contains(&format!("test {NIC_TEST} ... ok")) {
        failures.push(format!(
            "the NIC pair test ({NIC_TEST}) did not pass in the guest that has the pair"
        ));
    }
    if let Some(programs) = vm.outputs.get(2) {
        print!("  `{}`:\n{}", programs.command, indented(&programs.stdout));
        if !programs.stderr.trim().is_empty() {
            print!("  its stderr:\n{}", indented(&programs.stderr));
        }
        if programs.rc != 0
            || !programs.stdout.contains("test result: ok.")
            || programs.stdout.contains("ok. 0 passed")
        {
            failures.push(format!(
                "the trace-programs tests (nginx, strace) failed in the guest (exit status {})",
                programs.rc
            ));
        }
    }
    let probes = &vm.outputs[1];
    print!("  `{}`:\n{}", probes.command, indented(&probes.stdout));
    if probes.rc != 0 {
        failures.push(format!(
            "`{}` exited with status {}: {}",
            probes.command,
            probes.rc,
            probes.stderr.trim()
        ));
    }
    failures
}

/// `vm-test`: boots each kernel once per file system of its /var/tmp, runs the kernel-matrix
/// tests there, prints a summary.
pub fn vm_test(
    kernels: &[&Kernel],
    filesystems: &[VarTmp],
    options: &VmOptions,
    result_file: Option<&Path>,
) -> Result {
    // One zc-trace and one set of test binaries per architecture for every kernel; a build
    // failure is nobody's kernel's.
    let mut archs: Vec<GuestArch> = kernels.iter().map(|k| k.arch).collect();
    archs.dedup();
    let mut per_arch = Vec::new();
    for arch in archs {
        if per_arch.iter().any(|(a, _)| *a == arch) {
            continue;
        }
        let zc_trace = super::zc_trace_binary(options, arch)?;
        let tests = initramfs::guest_test_binary("kernel_matrix", arch)?;
        println!(
            "{}: zc-trace: {} ({}); tests: {}",
            arch.debian(),
            zc_trace.display(),
            if options.binary.is_some() {
                "as given by --binary"
            } else {
                "static build of the working tree"
            },
            tests.display()
        );
        let mut binaries = options.binaries.clone();
        binaries.push((tests, TEST_NAME));
        binaries.push((initramfs::static_c_program("xfer", arch)?, XFER_NAME));
        binaries.push((initramfs::static_c_program("tasks", arch)?, TASKS_NAME));
        if arch == GuestArch::Amd64 {
            binaries.push((
                initramfs::guest_test_binary("trace_programs", arch)?,
                PROGRAMS_NAME,
            ));
        }
        per_arch.push((arch, binaries));
    }
    let options_for = |k: &Kernel| -> VmOptions {
        let mut o = options.clone();
        if let Some((_, b)) = per_arch.iter().find(|(a, _)| *a == k.arch) {
            o.binaries = b.clone();
        }
        o
    };
    let tools = crate::trace_tools::ensure()?;
    // File system by file system, so that cells running at once are of different kernels;
    // a kernel's own list of file systems applies unless one was asked for (`--var-tmp`).
    let asked = filesystems.len() == 1;
    let cells: Vec<(&Kernel, VarTmp)> = filesystems
        .iter()
        .flat_map(|fs| kernels.iter().map(move |k| (*k, *fs)))
        .filter(|(k, fs)| asked || k.filesystems.contains(fs))
        .collect();
    let jobs = parallel_cells(cells.len(), options);
    let mut all_failures = Vec::new();
    let mut summary = Vec::new();
    let outcomes = if jobs > 1 {
        println!(
            "vm-test: {} cells, {jobs} at a time (one guest per core)",
            cells.len()
        );
        run_cells_in_parallel(&cells, jobs, options)?
    } else {
        cells
            .iter()
            .map(|(k, fs)| run_cell(k, *fs, &options_for(k), &tools))
            .collect()
    };
    if let Some(path) = result_file {
        // A cell run for a parent `vm-test` (run_cells_in_parallel): it prints the table.
        let [cell] = <[CellOutcome; 1]>::try_from(outcomes)
            .map_err(|o| format!("--cell-result is for one cell, not {}", o.len()))?;
        let json = serde_json::to_string(&cell).map_err(|e| e.to_string())?;
        return std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()));
    }
    for ((k, fs), cell) in cells.iter().zip(outcomes) {
        summary.push(cell.row);
        all_failures.extend(
            cell.failures
                .into_iter()
                .map(|f| format!("{} on {}: {f}", k.name, fs.name())),
        );
    }
    println!(
        "\n== summary, in seconds: boot and tests by the guest's clock; wall: the qemu process; \
         total: with disk image and initramfs"
    );
    print_table(
        &[
            "kernel", "/var/tmp", "release", "package", "boot", "tests", "wall", "total", "result",
        ],
        &summary,
    );
    // The plain closing line test-result readers recognise, counting kernels.
    let failed = summary
        .iter()
        .filter(|r| r.last().is_some_and(|v| v != "ok"))
        .count();
    println!("boots: {} passed, {failed} failed", summary.len() - failed);
    if all_failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "vm-test: {} failure(s):\n  {}",
            all_failures.len(),
            all_failures.join("\n  ")
        ))
    }
}

/// One cell's line of the summary table, and what failed in it.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct CellOutcome {
    row: Vec<String>,
    failures: Vec<String>,
}

/// Boots one kernel with /var/tmp on one file system and checks it (printing as it goes).
fn run_cell(k: &Kernel, fs: VarTmp, options: &VmOptions, tools: &Path) -> CellOutcome {
    println!(
        "\n== {} with /var/tmp on {}: {}",
        k.name,
        fs.name(),
        k.description
    );
    let started = std::time::Instant::now();
    let command = test_command(&k.name, fs.nic_pair());
    let mut options = VmOptions {
        var_tmp: fs,
        ..options.clone()
    };
    let programs = programs_command();
    let mut commands = vec![command.as_str(), PROBES_COMMAND];
    // One file system per kernel is enough for nginx and strace (they take 36 MB).
    if fs.nic_pair() {
        if k.arch != GuestArch::Amd64 {
            return CellOutcome {
                row: vec![k.name.clone(), fs.name().into()],
                failures: vec![format!(
                    "the {} boot has the NIC pair and the trace tools, which only x86_64 guests \
                     have so far: give this kernel other file systems in the matrix file",
                    fs.name()
                )],
            };
        }
        options.trees.push((tools.to_path_buf(), TOOLS_IN_GUEST));
        commands.push(&programs);
        // The NIC pair's runs and nginx under TCG: room for them.
        options.timeout += std::time::Duration::from_secs(300);
    }
    let secs = |s: Option<f64>| s.map_or("?".into(), |s| format!("{s:.1}"));
    let (failures, mut row) = match boot(k, &commands, &options) {
        Ok(vm) => {
            println!(
                "  {} (uname -r {}), /var/tmp on {}",
                vm.package, vm.release, vm.var_tmp
            );
            let f = check_vm(&vm, &options);
            let row = vec![
                k.name.clone(),
                fs.name().into(),
                vm.release.clone(),
                // The metapackage's spec (the first); the rest are in the log.
                vm.package.split_whitespace().next().unwrap_or("?").into(),
                secs(vm.boot_seconds),
                secs(vm.outputs[0].seconds),
                format!("{:.1}", vm.wall.as_secs_f64()),
            ];
            (f, row)
        }
        Err(e) => {
            println!("  {e}");
            let first = e.lines().next().unwrap_or_default().to_string();
            (vec![first], vec![k.name.clone(), fs.name().into()])
        }
    };
    for f in &failures {
        println!("  FAIL: {f}");
    }
    row.resize(7, "?".into());
    row.push(format!("{:.1}", started.elapsed().as_secs_f64()));
    row.push(if failures.is_empty() {
        "ok".into()
    } else {
        format!("FAILED ({})", failures.len())
    });
    CellOutcome { row, failures }
}

/// How many cells run at once: one guest per core (TCG runs each guest on one thread), two
/// cells of one kernel never together (they share its disk image, initramfs and log).
fn parallel_cells(cells: usize, options: &VmOptions) -> usize {
    if options.echo_console {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(cells).max(1)
}

/// Runs each cell as a child `xtask vm-test` of one kernel and one file system, `jobs` at a
/// time, each with its output in a file that is printed whole when the cell ends (in the
/// order they end); the outcomes come back in the cells' order.
fn run_cells_in_parallel(
    cells: &[(&Kernel, VarTmp)],
    jobs: usize,
    options: &VmOptions,
) -> Result<Vec<CellOutcome>> {
    let exe = std::env::current_exe().map_err(|e| format!("the xtask executable: {e}"))?;
    let dir = super::vm_dir().join("cells");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut outcomes: Vec<Option<CellOutcome>> = cells.iter().map(|_| None).collect();
    let mut running: Vec<(usize, std::process::Child, PathBuf, PathBuf)> = Vec::new();
    let mut next = 0;
    loop {
        // Start what may start: free slots, and a kernel not already booted by a running cell.
        while running.len() < jobs {
            let busy = |i: usize| {
                running
                    .iter()
                    .any(|(j, ..)| cells[*j].0.name == cells[i].0.name)
            };
            let Some(i) = (next..cells.len()).find(|&i| {
                outcomes[i].is_none() && !busy(i) && !running.iter().any(|(j, ..)| *j == i)
            }) else {
                break;
            };
            if i == next {
                next += 1;
            }
            let (k, fs) = cells[i];
            let stem = format!("{}-{}", k.name, fs.name());
            let out = dir.join(format!("{stem}.out"));
            let result = dir.join(format!("{stem}.json"));
            let _ = std::fs::remove_file(&result);
            let log = std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let err = log.try_clone().map_err(|e| e.to_string())?;
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["vm-test", "--kernel", &k.name, "--var-tmp", fs.name()])
                .arg("--timeout")
                .arg(options.timeout.as_secs().to_string());
            // Without one, each cell finds the static builds the parent made (cargo has
            // nothing left to do) for its own kernel's architecture.
            if let Some(binary) = &options.binary {
                cmd.arg("--binary").arg(binary);
            }
            let child = crate::util::die_with_parent(&mut cmd)
                .arg("--cell-result")
                .arg(&result)
                .stdin(std::process::Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
            running.push((i, child, out, result));
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut still = Vec::new();
        for (i, mut child, out, result) in running {
            match child.try_wait().map_err(|e| e.to_string())? {
                None => still.push((i, child, out, result)),
                Some(status) => {
                    print!("{}", std::fs::read_to_string(&out).unwrap_or_default());
                    let outcome = std::fs::read_to_string(&result)
                        .ok()
                        .and_then(|t| serde_json::from_str::<CellOutcome>(&t).ok())
                        .unwrap_or_else(|| CellOutcome {
                            row: vec![cells[i].0.name.clone(), cells[i].1.name().into()],
                            failures: vec![format!(
                                "the cell's `xtask vm-test` ended ({status}) without its result \
                                 (its output is above, and in {})",
                                out.display()
                            )],
                        });
                    outcomes[i] = Some(outcome);
                }
            }
        }
        running = still;
    }
    Ok(outcomes
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// Prints rows as an aligned text table.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    line(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_runs_the_tests_as_ci_would() {
        let c = test_command("debian-12-6.1", false);
        assert!(
            c.starts_with("CI=true ZC_TRACE_KERNEL=debian-12-6.1 "),
            "{c}"
        );
        assert!(c.contains("/bin/kernel-matrix --test-threads=1"), "{c}");
    }

    #[test]
    fn kernel_splats_are_found() {
        let log = "[ 0.4] LSM support for eBPF active\n[ 3.1] WARNING: CPU: 1 PID: 90 at kernel/bpf/x.c:1\n\
                   [ 3.2] Call Trace:\n[ 3.3] PCI: ... report a bug\n";
        assert_eq!(kernel_problems(log).len(), 2);
        assert!(kernel_problems("[ 1.0] calibrate_delay_direct() failed\n").is_empty());
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            super::super::strip_escapes("\x1bc\x1b[?7l\x1b[2Jboot\r"),
            "boot"
        );
    }

    #[test]
    fn console_markers_are_parsed() {
        let console = "boot noise\n\x1bc\x1b[?7l@@ZC-READY up=3.21 kernel=6.1.0-x var_tmp=ext4@@\n\
                       @@ZC-BEGIN 0@@\n{\"a\": 1}\n\n@@ZC-END 0 rc=0@@\n\
                       @@ZC-STDERR-BEGIN 0@@\n\n@@ZC-STDERR-END 0@@\n@@ZC-TIME 0 start=3.30 end=5.80@@\n\
                       \x1b[0m@@ZC-BEGIN 1@@\nno newline\n@@ZC-END 1 rc=2@@\n\
                       @@ZC-STDERR-BEGIN 1@@\nError: boom\n\n@@ZC-STDERR-END 1@@\n\
                       @@ZC-DMESG-BEGIN@@\n[    1.0] hello\n\n@@ZC-DMESG-END@@\n@@ZC-DONE@@\n";
        let (ready, out, dmesg) = super::super::parse_console(console, &["a", "b"]).unwrap();
        assert_eq!(dmesg, "[    1.0] hello\n");
        assert_eq!(ready.field("up").as_deref(), Some("3.21"));
        assert_eq!(ready.field("var_tmp").as_deref(), Some("ext4"));
        assert_eq!(out[0].stdout, "{\"a\": 1}\n");
        assert_eq!(out[0].rc, 0);
        assert_eq!(out[0].stderr, "");
        assert!((out[0].seconds.unwrap() - 2.5).abs() < 1e-9);
        assert_eq!(out[1].stdout, "no newline");
        assert_eq!(out[1].rc, 2);
        assert_eq!(out[1].stderr, "Error: boom\n");
        assert!(super::super::parse_console(console, &["a", "b", "c"]).is_err());
    }
}
