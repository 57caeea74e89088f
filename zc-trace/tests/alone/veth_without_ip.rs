//! The veth sink needs no `ip` (iproute2), nor any other program: zc-trace makes the network
//! namespaces (unshare and a bind mount), the veth pair, its addresses and links (netlink)
//! itself, so the sink works on busybox systems, in minimal containers and in the VM guests.
//! Here zc-trace runs with a PATH that holds no program at all, with scatter-gather on and
//! off. One test per binary: no other run's namespaces come and go beside it.

#[path = "../common/mod.rs"]
mod common;

use std::process::Command;

use common::{bin, bpf_available, figure, strategy};

const S: f64 = (1 << 20) as f64;

#[test]
fn the_veth_sink_runs_with_no_program_on_path() {
    if !bpf_available("the_veth_sink_runs_with_no_program_on_path") {
        return;
    }
    for (extra, sg) in [(None, true), (Some("--no-sg"), false)] {
        let child = Command::new(bin())
            .args(["run", "--format", "json", "--no-fail", "--sink", "veth"])
            .args(["--strategies", "sendfile", "--size", "1M", "--chunk", "64K"])
            .args(extra)
            .env("PATH", "/nonexistent")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.is_empty(), "{extra:?}: stderr: {stderr}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["config"]["sink"], "veth");
        assert_eq!(r["config"]["sink_scatter_gather"], sg, "{extra:?}");
        let s = strategy(&r, "sendfile");
        assert_eq!(figure(s, "by_reference_bytes"), S, "{extra:?}");
        assert_eq!(figure(s, "receiver_copied_bytes"), S, "{extra:?}");
        let prefix = format!("zc-trace-{pid}-");
        let left: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{extra:?}: left behind: {left:?}");
    }
}
