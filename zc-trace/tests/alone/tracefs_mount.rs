//! When tracefs is not mounted (the default on the CI machine), zc-trace mounts it, uses it,
//! and unmounts it on exit: nothing left behind. Its own binary, so no other zc-trace of the
//! test suite runs while tracefs is away.

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;

use common::{bpf_available, zc_trace};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

const TRACEFS: &str = "/sys/kernel/tracing";

fn tracefs_mounted() -> bool {
    Path::new(TRACEFS).join("events").is_dir()
        || Path::new("/sys/kernel/debug/tracing/events").is_dir()
}

#[test]
fn tracefs_is_mounted_when_missing_and_unmounted_after() {
    if !bpf_available("tracefs_is_mounted_when_missing_and_unmounted_after") {
        return;
    }
    while umount2(TRACEFS, MntFlags::MNT_DETACH).is_ok() {}
    assert!(
        !tracefs_mounted(),
        "tracefs is still reachable (debugfs?); cannot test the mount path"
    );

    let out = zc_trace(&["probes", "--json", "-v"]);
    let still_mounted = tracefs_mounted();
    // Restore it for whoever runs next, before any assertion can fail.
    mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("remount tracefs");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("mounted tracefs at /sys/kernel/tracing"),
        "{stderr}"
    );
    assert!(!still_mounted, "zc-trace left its tracefs mount behind");
}
