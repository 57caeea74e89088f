//! `zc-trace trace`: small programs, one per strategy (tests/programs/xfer.c, built static here
//! with the C compiler Rust links with), traced with exact figures; a running process attached
//! by pid; exit statuses passed through; bad input refused before anything is attached.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::trace::{fd_bytes, payload, receiver, site, trace_json, xfer, N};
use serde_json::Value;

/// What `trace --pid`'s stderr said up to its "tracing ..." line (it has attached then), and
/// the rest of its stderr, to be kept open while it runs (a closed one would fail its writes).
fn until_attached(
    tracer: &mut std::process::Child,
) -> (String, std::io::BufReader<std::process::ChildStderr>) {
    let mut stderr = std::io::BufReader::new(tracer.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        said.push_str(&line);
        if n == 0 || line.contains("tracing") {
            return (said, stderr);
        }
    }
}

/// Traces `xfer STRATEGY` and checks its exact figures (see `common::trace::EXPECTED`).
macro_rules! strategy_test {
    ($name:ident, $strategy:literal) => {
        #[test]
        fn $name() {
            if !common::bpf_available(stringify!($name)) {
                return;
            }
            common::trace::check_xfer(common::trace::expected($strategy));
        }
    };
}

strategy_test!(read_write_copies_the_file_twice, "read-write");
strategy_test!(mmap_write_copies_it_once, "mmap-write");
strategy_test!(sendfile_passes_it_by_reference, "sendfile");
strategy_test!(splice_passes_it_by_reference, "splice");

#[test]
fn a_running_process_is_traced_by_pid_until_it_exits() {
    if !common::bpf_available("a_running_process_is_traced_by_pid_until_it_exits") {
        return;
    }
    let file = payload("pid");
    let (port, received) = receiver();
    let mut prog = Command::new(xfer())
        .args([
            "read-write",
            file.to_str().unwrap(),
            &port.to_string(),
            "wait",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = prog.id().to_string();
    let mut tracer = Command::new(common::bin())
        .args(["trace", "--format", "json", "--pid", &pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // zc-trace says on stderr when it has attached; then the program goes on.
    let (said, _stderr) = until_attached(&mut tracer);
    assert!(said.contains("zc-trace: tracing"), "not attached: {said}");
    prog.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(prog.wait().unwrap().success());
    let out = tracer.wait_with_output().unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(received.join().unwrap(), N);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}\n{stdout}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["ending"]["reason"], "every traced task exited");
    assert!(r["ending"]["exit_status"].is_null(), "not zc-trace's child");
    assert_eq!(fd_bytes(&r, "read", "in", "regular"), N);
    assert_eq!(fd_bytes(&r, "write", "out", "tcp"), N);
    // The byte it waited for, read before and returned after the attach, or after: either
    // way it is a pipe's, not the file's.
    assert_eq!(site(&r, "tcp_send")[0], N);
    assert_eq!(site(&r, "file_read")[1], N);
}

#[test]
fn the_commands_exit_status_and_its_children_are_followed() {
    if !common::bpf_available("the_commands_exit_status_and_its_children_are_followed") {
        return;
    }
    let file = payload("children");
    // A shell that starts two processes, one of them in the background, and exits 7.
    let script = format!(
        "cat {f} > /dev/null & cat {f} > /dev/null; wait; exit 7",
        f = file.display()
    );
    let (r, status) = trace_json(&["trace", "--format", "json", "--", "sh", "-c", &script]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(status, 7, "the command's status passes through");
    assert_eq!(r["ending"]["exit_status"], 7);
    // Both children's reads of the file, counted in the kernel as they were forked.
    let read: u64 = ["read", "pread64", "copy_file_range", "sendfile", "splice"]
        .iter()
        .map(|s| fd_bytes(&r, s, "in", "regular"))
        .sum();
    assert!(read >= 2 * N, "both cats' reads are counted: {read} bytes");
    assert!(
        r["program"]["syscalls_by_name"]["execve"]["count"]["median"]
            .as_f64()
            .unwrap()
            >= 3.0,
        "sh and both cats"
    );
}

#[test]
fn io_uring_requests_are_counted_by_opcode() {
    if !common::bpf_available("io_uring_requests_are_counted_by_opcode") {
        return;
    }
    // zc-trace itself, untraced, as the program: 8 SEND_ZC requests of 128 KiB. Its own
    // report would share stdout with the trace's.
    let inner = format!(
        "exec {} run --untraced --strategies io-uring-send-zc --size 1M --chunk 128K \
         --format csv > /dev/null",
        common::bin()
    );
    let (r, status) = trace_json(&["trace", "--format", "json", "--", "sh", "-c", &inner]);
    assert_eq!(status, 0, "{r}");
    let ops = &r["io_uring_requests"];
    assert!(ops.is_object(), "io_uring is observable here: {ops}");
    assert_eq!(ops["SendZc"], 8, "{ops}");
}

#[test]
fn bad_commands_and_pids_are_refused_with_their_status() {
    // Checked before anything is loaded: no root needed.
    let plain = std::env::temp_dir()
        .join(format!("zc-trace-test-plain.{}", std::process::id()))
        .display()
        .to_string();
    std::fs::write(&plain, "not a program").unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["trace", "--", "zc-trace-no-such-program"],
            127,
            "not found on PATH",
        ),
        (&["trace", "--", "/nonexistent/prog"], 127, "no such file"),
        (&["trace", "--", &plain], 126, "is not executable"),
        (&["trace"], 2, "give a command to trace"),
        (&["trace", "--pid", "1", "--", "true"], 2, "not both"),
        (&["trace", "--pid", "0"], 2, "0 is not a process"),
        (&["trace", "--pid", "4000000000"], 2, "no such process"),
        (&["trace", "--pid", "2"], 2, "kernel thread"),
        (&["trace", "--", "/tmp"], 126, "is a directory"),
        (&["trace", "--duration", "0", "--", "true"], 2, "above 0"),
        (
            &["trace", "--claims", "x.toml", "--", "true"],
            2,
            "--strategy",
        ),
    ];
    for (args, code, message) in cases {
        let out = common::zc_trace(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    std::fs::remove_file(&plain).unwrap();
}

#[test]
fn duration_ends_the_command_and_intervals_are_printed() {
    if !common::bpf_available("duration_ends_the_command_and_intervals_are_printed") {
        return;
    }
    let (r, status) = trace_json(&[
        "trace",
        "--format",
        "json",
        "--interval",
        "0.25",
        "--duration",
        "1.5",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(r["ending"]["reason"], "--duration");
    // The command got SIGTERM at --duration: 128 + 15, passed through.
    assert_eq!(status, 143, "{}", r["ending"]);
    let n = r["intervals"].as_array().unwrap().len();
    assert!(
        (4..=7).contains(&n),
        "about 6 intervals of 0.25 s in 1.5 s: {n}"
    );
    for i in r["intervals"].as_array().unwrap() {
        assert!(i["transitions_per_sec"].is_number(), "{i}");
    }
}

#[test]
fn claims_are_judged_against_the_traced_program() {
    if !common::bpf_available("claims_are_judged_against_the_traced_program") {
        return;
    }
    let claims = std::env::temp_dir().join(format!("zc-trace-test-claims.{}", std::process::id()));
    std::fs::write(
        &claims,
        "format = 1\nsource = \"a course\"\n\
         [[claim]]\nstrategy = \"sendfile\"\nfigure = \"cpu_copies\"\nvalue = 0\n\
         [[claim]]\nstrategy = \"sendfile\"\nfigure = \"cpu_copies\"\nvalue = 2\n",
    )
    .unwrap();
    let file = payload("claims");
    let (port, received) = receiver();
    let (r, status) = trace_json(&[
        "trace",
        "--format",
        "json",
        "--strategy",
        "sendfile",
        "--claims",
        claims.to_str().unwrap(),
        "--",
        xfer().to_str().unwrap(),
        "sendfile",
        file.to_str().unwrap(),
        &port.to_string(),
    ]);
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(&claims).unwrap();
    assert_eq!(received.join().unwrap(), N);
    let verdicts: Vec<&str> = r["claims"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["holds", "differs"], "{}", r["claims"]);
    assert_eq!(status, 1, "a claim that differs fails the trace");
}

#[test]
fn a_process_that_is_gone_by_the_attach_is_a_measurement_error() {
    if !common::bpf_available("a_process_that_is_gone_by_the_attach_is_a_measurement_error") {
        return;
    }
    // A child that has exited but is not reaped: its /proc entry stays, as a zombie. That
    // is bad input (exit 2), known before anything is attached (it was exit 4).
    let mut child = Command::new("true").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = common::zc_trace(&["trace", "--pid", &child.id().to_string()]);
    child.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("a zombie"), "{stderr}");
    // zc-trace itself: it would count its own polling and never end (sh's pid becomes
    // zc-trace's by exec).
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {} trace --pid $$", common::bin()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("this zc-trace itself"), "{stderr}");
}

/// The traced command starts with the signal dispositions and mask zc-trace was given: it
/// found signals 32 and 33 ignored (SigIgn 0000000180000000), which a plain start does not.
/// SIGHUP ignored by the caller (as `nohup` does) stays ignored.
#[test]
fn the_command_starts_with_the_callers_signal_dispositions() {
    if !common::bpf_available("the_command_starts_with_the_callers_signal_dispositions") {
        return;
    }
    let masks = |ignore_hup: bool, traced: bool| {
        let mut c = Command::new("sh");
        // Every signal at its default first: the test harness here may ignore some (32 and
        // 33 were), and a baseline that has them would hide the finding.
        // SAFETY: only rt_sigaction between fork and exec, on a struct of the kernel's layout
        // (handler, flags, restorer, mask), raw: libc refuses the signals it reserves.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                let dfl = [0u64; 4];
                for sig in 1..=64i64 {
                    nix::libc::syscall(
                        nix::libc::SYS_rt_sigaction,
                        sig,
                        dfl.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8usize,
                    );
                }
                Ok(())
            });
        }
        let trap = if ignore_hup { "trap '' HUP; " } else { "" };
        let zc_trace = if traced {
            format!("{} trace --format json --", common::bin())
        } else {
            String::new()
        };
        c.arg("-c").arg(format!(
            "{trap}exec {zc_trace} grep -E '^Sig(Ign|Blk):' /proc/self/status"
        ));
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} in {stdout}"))
                .trim()
                .to_string()
        };
        (field("SigIgn:"), field("SigBlk:"))
    };
    // What a plain start gives here (the test harness may itself ignore some signals).
    assert_eq!(
        masks(false, false).0,
        "0000000000000000",
        "the baseline is clean"
    );
    for hup in [false, true] {
        assert_eq!(masks(hup, true), masks(hup, false), "SIGHUP ignored: {hup}");
    }
    let (ignored, _) = masks(true, true);
    let ignored = u64::from_str_radix(&ignored, 16).unwrap();
    assert_ne!(ignored & 1, 0, "SIGHUP stays ignored");
}

/// --duration sends SIGTERM; a command that ignores it used to keep running while zc-trace
/// exited 0 without a word. After the grace it is killed with SIGKILL, the exit status is 137
/// and the report says so.
#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace_and_says_so() {
    if !common::bpf_available(
        "a_command_that_ignores_sigterm_is_killed_after_the_grace_and_says_so",
    ) {
        return;
    }
    let started = std::time::Instant::now();
    let (r, status) = trace_json(&[
        "trace",
        "--format",
        "json",
        "--duration",
        "0.5",
        "--",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    assert_eq!(status, 137, "{}", r["ending"]);
    assert_eq!(r["ending"]["reason"], "--duration");
    let killed = r["ending"]["killed"].as_str().unwrap_or_default();
    assert!(killed.contains("killed with SIGKILL"), "{}", r["ending"]);
    assert!(started.elapsed().as_secs() < 60, "it ended");
}

/// `trace --pid` of a process that starts short-lived children all the time: a child that
/// exited between the /proc scan and its insert into TASKS stayed there for good (2 of 8
/// tries), so the trace never ended by itself. Now every attach ends when the process does.
#[test]
fn a_task_that_exits_during_the_attach_is_not_kept() {
    if !common::bpf_available("a_task_that_exits_during_the_attach_is_not_kept") {
        return;
    }
    for attempt in 0..3 {
        let mut busy = Command::new("sh")
            .arg("-c")
            .arg("end=$(($(date +%s) + 8)); while [ $(date +%s) -lt $end ]; do true & done; wait")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut trace = Command::new(common::bin())
            .args(["trace", "--format", "json", "--pid", &busy.id().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read while it runs: its report (about 64 KiB here) can fill a pipe, and a trace
        // blocked on its stdout looked like one that never ended.
        let readers = [
            Box::new(trace.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(trace.stderr.take().unwrap()),
        ]
        .map(|mut r| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        });
        busy.wait().unwrap();
        let status = common::Proc::adopt("zc-trace trace --pid", trace)
            .wait_at_most(std::time::Duration::from_secs(30));
        let [stdout, stderr] = readers.map(|t| t.join().unwrap());
        let status = status.unwrap_or_else(|| {
            panic!("attempt {attempt}: the trace did not end within 30 s of the process")
        });
        let stdout = String::from_utf8_lossy(&stdout);
        assert!(
            status.success(),
            "attempt {attempt}: {status}: {}",
            String::from_utf8_lossy(&stderr)
        );
        let r: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(r["ending"]["reason"], "every traced task exited");
    }
}

/// The command run as the sudo user inherited root's environment (HOME=/root, LD_PRELOAD);
/// it gets the user's HOME, USER, LOGNAME and SHELL, and no LD_* variable.
#[test]
fn the_dropped_privilege_command_gets_the_users_environment() {
    if !common::bpf_available("the_dropped_privilege_command_gets_the_users_environment") {
        return;
    }
    let out = Command::new(common::bin())
        .args(["trace", "--format", "json", "--", "sh", "-c"])
        .arg("echo \"ENV $(id -u) $HOME $USER $LOGNAME ${LD_PRELOAD-unset} ${LD_LIBRARY_PATH-unset}\"")
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .env("SUDO_USER", "nobody")
        .env("HOME", "/root")
        .env("LD_PRELOAD", "")
        .env("LD_LIBRARY_PATH", "/root/lib")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("ENV "))
        .unwrap_or_else(|| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(65534))
        .unwrap()
        .map_or("/nonexistent".into(), |u| u.dir.display().to_string());
    assert_eq!(line, format!("ENV 65534 {home} nobody nobody unset unset"));
}

#[test]
fn a_thread_that_execs_is_followed_into_the_new_program() {
    if !common::bpf_available("a_thread_that_execs_is_followed_into_the_new_program") {
        return;
    }
    common::trace::check_exec_from_a_thread();
}

#[test]
fn tasks_beyond_the_task_table_make_the_report_incomplete() {
    if !common::bpf_available("tasks_beyond_the_task_table_make_the_report_incomplete") {
        return;
    }
    common::trace::check_task_limit();
}

#[test]
fn transitions_equal_the_kernels_own_syscall_events() {
    if !common::bpf_available("transitions_equal_the_kernels_own_syscall_events") {
        return;
    }
    common::trace::check_transitions_against_ftrace();
}

/// zc-trace on a terminal of its own (a new session with the pty as its controlling
/// terminal, as a shell would start it): one Ctrl-C there reaches the command once. The
/// terminal sends it to the whole foreground group, the command included; zc-trace used to
/// pass its own copy on as well, so the command got two.
#[test]
fn a_terminals_ctrl_c_reaches_the_command_once() {
    if !common::bpf_available("a_terminals_ctrl_c_reaches_the_command_once") {
        return;
    }
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = pty.slave;
    let tasks = common::trace::tasks();
    let mut cmd = Command::new(common::bin());
    cmd.args(["trace", "--", tasks.to_str().unwrap(), "sigints", "3"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("zc-trace runs");
    // The Command holds copies of the slave too: all must go for the master to see the end.
    drop(cmd);
    drop(slave);
    let mut master = std::fs::File::from(pty.master);
    let mut text = String::new();
    let mut sent = false;
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
        if !sent && text.contains("ready") {
            std::io::Write::write_all(&mut master, b"\x03").unwrap();
            sent = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(sent, "the command never said it was ready:\n{text}");
    assert!(
        text.contains("sigints 1\r\n"),
        "one Ctrl-C must reach the command once ({status}):\n{text}"
    );
}

/// `--duration` ends what the command left running too: `sh -c 'sleep & wait'` used to have
/// only sh signalled, and the sleep lived on after zc-trace had exited.
#[test]
fn duration_reaches_the_processes_the_command_started() {
    if !common::bpf_available("duration_reaches_the_processes_the_command_started") {
        return;
    }
    // A sleep this test can tell from every other on the host.
    let secs = format!("27.{}", std::process::id());
    let started = std::time::Instant::now();
    let (r, status) = trace_json(&[
        "trace",
        "-j",
        "--duration",
        "1",
        "--",
        "sh",
        "-c",
        &format!("sleep {secs} & wait"),
    ]);
    assert_eq!(r["ending"]["reason"], "--duration");
    assert_eq!(status, 143, "sh ended by the SIGTERM: {}", r["ending"]);
    assert!(started.elapsed().as_secs() < 20, "it ended at once");
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&secs))
        .collect();
    assert!(left.is_empty(), "still running after the trace: {left:?}");
}

/// `--pid` of a process zc-trace descends from (`--pid 1` is the extreme case; here the
/// shell that started it, waiting in wait4 the whole time): zc-trace's own threads are not
/// followed. They were, and the trace counted zc-trace's own polling.
#[test]
fn a_pid_that_zc_trace_descends_from_leaves_zc_trace_out() {
    if !common::bpf_available("a_pid_that_zc_trace_descends_from_leaves_zc_trace_out") {
        return;
    }
    let out = Command::new("sh")
        .args([
            "-c",
            "\"$0\" trace -j --pid $$ --duration 1; :",
            &common::bin(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert!(stderr.contains("tracing 1 thread"), "{stderr}");
    let f = &r["program"]["figures"];
    assert_eq!(f["syscalls"]["value"]["median"], 0, "{}", f["syscalls"]);
    assert_eq!(
        f["transitions"]["value"]["median"], 0,
        "{}",
        f["transitions"]
    );
}

/// `--pid` of a process whose main thread has exited (pthread_exit) while another thread
/// runs: it is traced (its threads are what runs), the exited leader is not kept, and the
/// trace ends when the last thread does.
#[test]
fn a_process_whose_leader_exited_is_traced_by_pid() {
    if !common::bpf_available("a_process_whose_leader_exited_is_traced_by_pid") {
        return;
    }
    let mut prog = Command::new(common::trace::tasks())
        .args(["leader-exit", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(prog.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    // The leader is a zombie once pthread_exit is through.
    let pid = prog.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .unwrap()
        .state
        != 'Z'
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut tracer = Command::new(common::bin())
        .args(["trace", "-j", "--duration", "60", "--pid", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (said, _stderr) = until_attached(&mut tracer);
    assert!(said.contains("tracing 1 thread"), "{said}");
    prog.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(prog.wait().unwrap().success());
    let out = tracer.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {said}"));
    assert_eq!(r["ending"]["reason"], "every traced task exited");
    assert_eq!(fd_bytes(&r, "write", "out", "char_device"), 5000);
}
