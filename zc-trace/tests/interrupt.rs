//! Ctrl-C in the middle of a measurement: zc-trace exits 130 and leaves nothing behind (no
//! receiver process, no temporary file, no eBPF program). One test per binary, so no other
//! zc-trace instance of the test suite is loaded while it checks for leftovers.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{bpf_available, BIN};

fn zc_trace_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .filter(|n| n.starts_with("zc_"))
        .collect()
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Field 4 (ppid) follows the parenthesised command name.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == pid {
            out.push(child);
        }
    }
    out
}

#[test]
fn ctrl_c_mid_run_cleans_up_everything() {
    if !bpf_available("ctrl_c_mid_run_cleans_up_everything") {
        return;
    }
    assert!(
        zc_trace_programs().is_empty(),
        "zc-trace programs already loaded before the test"
    );
    let tmpdir = std::env::temp_dir().join(format!("zc-trace-interrupt-{}", std::process::id()));
    std::fs::create_dir_all(&tmpdir).unwrap();

    let mut child = Command::new(BIN)
        .args([
            "run",
            "-v",
            "--size",
            "64M",
            "--chunk",
            "4K",
            "--iterations",
            "100",
        ])
        .arg("--tmpdir")
        .arg(&tmpdir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start zc-trace");
    let pid = child.id();

    // Wait until a strategy is running: probes attached, receiver up, transfer under way.
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("running ") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("zc-trace never started a strategy");
    std::thread::sleep(Duration::from_millis(300));
    let receivers = children_of(pid);
    assert_eq!(
        receivers.len(),
        1,
        "expected exactly the receiver as child: {receivers:?}"
    );
    assert!(
        !zc_trace_programs().is_empty(),
        "no zc-trace program loaded mid-run"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();

    assert_eq!(status.code(), Some(130), "stderr:\n{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    for r in receivers {
        assert!(
            !std::path::Path::new(&format!("/proc/{r}")).exists(),
            "receiver {r} still exists after zc-trace exited"
        );
    }
    assert_eq!(
        std::fs::read_dir(&tmpdir).unwrap().count(),
        0,
        "temporary files left in {}",
        tmpdir.display()
    );
    assert!(
        zc_trace_programs().is_empty(),
        "eBPF programs left loaded: {:?}",
        zc_trace_programs()
    );
    std::fs::remove_dir(&tmpdir).unwrap();
}
