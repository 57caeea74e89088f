//! What a zc-trace killed with SIGKILL leaves (namespaces, sink directories, a tracefs mount)
//! is swept: by the next `run` before it starts, and by `zc-trace cleanup`. Only what is
//! provably zc-trace's and whose maker is dead: never another program's, never a running
//! zc-trace's. One test per binary: no other run's leftovers come and go beside it.

#[path = "../common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, bpf_available, zc_trace};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zc-trace-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A pid that no process has now (a child that exited and was reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sink_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("zc-trace-sink.")
        })
        .collect()
}

fn mounted_at(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

#[test]
fn leftovers_of_killed_runs_are_swept_and_nothing_else() {
    if !bpf_available("leftovers_of_killed_runs_are_swept_and_nothing_else") {
        return;
    }
    // 1. A run killed with SIGKILL while measuring leaves its sink directory; the next run
    //    removes it before it starts, and says so.
    let d = tmpdir("killed");
    let mut killed = Command::new(bin())
        .args(["run", "--sink", "unix", "--strategies", "read-write"])
        .args(["--size", "16M", "--iterations", "1000", "--tmpdir"])
        .arg(&d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the sink directory", || !sink_dirs(&d).is_empty());
    killed.kill().unwrap();
    killed.wait().unwrap();
    let left = sink_dirs(&d);
    assert_eq!(left.len(), 1, "SIGKILL leaves the sink directory: {left:?}");
    let out = zc_trace(&[
        "run",
        "--sink",
        "unix",
        "--strategies",
        "sendfile",
        "--size",
        "64K",
        "--no-fail",
        "--tmpdir",
        d.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed a leftover of a killed run: temporary file"),
        "{stderr}"
    );
    assert!(sink_dirs(&d).is_empty(), "{:?}", sink_dirs(&d));
    std::fs::remove_dir_all(&d).unwrap();

    // 2. `zc-trace cleanup`: leftovers of a dead zc-trace go, those of a running one and
    //    things that only look alike stay.
    let d = tmpdir("cleanup");
    // A running zc-trace (generating a large payload for a few seconds), started from a copy
    // of the binary under another name: liveness is its start time, not its name (a copy
    // named zct-copy had its sink swept while it ran).
    let live_tmp = tmpdir("live");
    let copy = live_tmp.join("zct-copy");
    std::fs::copy(bin(), &copy).unwrap();
    let mut live = Command::new(&copy)
        .args(["run", "--size", "2G", "--tmpdir"])
        .arg(&live_tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let live_dir = d.join(format!("zc-trace-sink.{}.aB3xYz", tag(live.id())));
    private_dir(&live_dir, 0);
    // Once it writes its payload it has made its own sweep (which would otherwise take the
    // dead run's namespace below before `cleanup` could).
    wait_for("the live zc-trace's payload", || {
        std::fs::read_dir(format!("/proc/{}/fd", live.id()))
            .map(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(&live_tmp)))
            })
            .unwrap_or(false)
    });
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/comm", live.id()))
            .unwrap()
            .trim(),
        "zct-copy"
    );

    let dead = dead_pid();
    let dead_tag = format!("{dead}-1");
    let dead_dir = d.join(format!("zc-trace-sink.{dead_tag}.aB3xYz"));
    private_dir(&dead_dir, 0);
    std::fs::write(dead_dir.join("sink.fifo"), "").unwrap();
    // A pid that runs (this test), named with another start time: the pid was reused.
    let reused_dir = d.join(format!("zc-trace-sink.{}-1.aB3xYz", std::process::id()));
    private_dir(&reused_dir, 0);
    let dead_ns = format!("zc-trace-{dead_tag}-tx");
    assert!(Command::new("ip")
        .args(["netns", "add", &dead_ns])
        .status()
        .unwrap()
        .success());
    let dead_tracefs = d.join("tracing");
    std::fs::create_dir(&dead_tracefs).unwrap();
    nix::mount::mount(
        Some(format!("zc-trace-{dead_tag}").as_str()),
        &dead_tracefs,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    // Look-alikes: wrong names, a right name owned by another user or with another mode, and
    // a symlink under /run/netns with a dead maker's name to a directory with a tmpfs on it
    // (umount2 followed it and unmounted that tmpfs).
    let lookalikes = [
        d.join("zc-trace-sink.notapid.aB3xYz"),
        d.join("zc-trace-sink-aB3xYz"),
        d.join(format!("zc-trace-sink.+{dead_tag}.aB3xYz")),
        d.join(format!("zc-trace-sink.0{dead_tag}.aB3xYz")),
        d.join("other"),
    ];
    for l in &lookalikes {
        std::fs::create_dir(l).unwrap();
    }
    let not_roots = d.join(format!("zc-trace-sink.{dead_tag}.nobody"));
    private_dir(&not_roots, 65534);
    let wrong_mode = d.join(format!("zc-trace-payload.{dead_tag}.mode77"));
    std::fs::write(&wrong_mode, "").unwrap();
    std::fs::set_permissions(&wrong_mode, std::fs::Permissions::from_mode(0o644)).unwrap();
    let unrelated = d.join("unrelated-tmpfs");
    std::fs::create_dir(&unrelated).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "unrelated"])
        .arg(&unrelated)
        .status()
        .unwrap()
        .success());
    let ns_link = Path::new("/run/netns").join(format!("zc-trace-{dead_tag}-rx"));
    std::os::unix::fs::symlink(&unrelated, &ns_link).unwrap();

    let dry = zc_trace(&["cleanup", "--dry-run", "--tmpdir", d.to_str().unwrap()]);
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success() && dry_out.contains("would remove"),
        "{dry_out}"
    );
    assert!(dead_dir.exists(), "--dry-run removed something");

    let out = zc_trace(&["cleanup", "--tmpdir", d.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = live.kill();
    let _ = live.wait();
    let dead_ns_left = Path::new("/run/netns").join(&dead_ns).exists();
    if dead_ns_left {
        let _ = Command::new("ip").args(["netns", "del", &dead_ns]).status();
    }
    let tracefs_left = mounted_at(&dead_tracefs);
    if tracefs_left {
        let _ = nix::mount::umount2(&dead_tracefs, nix::mount::MntFlags::MNT_DETACH);
    }
    let unrelated_kept = mounted_at(&unrelated);
    let _ = nix::mount::umount2(&unrelated, nix::mount::MntFlags::MNT_DETACH);
    let ns_link_kept = std::fs::symlink_metadata(&ns_link).is_ok();
    let _ = std::fs::remove_file(&ns_link);
    let kept: Vec<bool> = lookalikes
        .iter()
        .chain([&not_roots, &wrong_mode])
        .map(|l| l.exists())
        .collect();
    let live_kept = live_dir.exists();
    let dead_dir_left = dead_dir.exists();
    let reused_left = reused_dir.exists();
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::remove_dir_all(&live_tmp).unwrap();

    assert!(out.status.success(), "{stdout}");
    assert!(
        !dead_dir_left,
        "a dead run's sink directory stayed: {stdout}"
    );
    assert!(
        !reused_left,
        "a run whose pid was reused stayed, as if alive: {stdout}"
    );
    assert!(!dead_ns_left, "a dead run's namespace stayed: {stdout}");
    assert!(
        !tracefs_left,
        "a dead run's tracefs stayed mounted: {stdout}"
    );
    assert!(
        kept.iter().all(|&k| k),
        "a look-alike was removed ({kept:?}): {stdout}"
    );
    assert!(
        unrelated_kept && ns_link_kept,
        "cleanup unmounted a tmpfs through a symlink under /run/netns: {stdout}"
    );
    assert!(
        live_kept,
        "a running zc-trace's directory was removed: {stdout}"
    );
    for what in ["temporary file", "network namespace", "tracefs mount"] {
        assert!(stdout.contains(&format!("removed {what}")), "{stdout}");
    }
}

/// `PID-START` of a running process, as zc-trace names its leftovers.
fn tag(pid: u32) -> String {
    let stat = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .unwrap();
    format!("{pid}-{}", stat.starttime)
}

/// A directory as zc-trace makes one (mode 0700), owned by `uid`.
fn private_dir(path: &Path, uid: u32) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}
