//! `zc-trace receive --move-device`: the device goes back to the namespace it came from, up,
//! with its addresses, whether receive ends by itself (--count) or by a signal. It used to
//! stay in receive's namespace and go with it: a veth pair was destroyed.
//!
//! Everything happens in a network namespace the test makes (`unshare --net`) with a veth
//! pair of its own: no device of the machine is touched.

use crate::common;

use std::process::Command;

/// Moves zct-b (10.77.9.2/24, up) into receive's namespace, connects once from zct-a, then
/// does it again and ends receive with SIGTERM; after each, prints zct-b's state.
const SCRIPT: &str = r#"
set -e
zc="$0"
ip link add zct-a type veth peer name zct-b
ip addr add 10.77.9.1/24 dev zct-a
ip addr add 10.77.9.2/24 dev zct-b
ip link set zct-a up
ip link set zct-b up
state() {
    echo "state $1: $(ip -o -4 addr show dev zct-b 2>&1 | awk '{print $4}') flags $(ip -o link show dev zct-b 2>&1 | grep -o '<[^>]*>')"
}
listening() {
    for i in $(seq 200); do grep -q "listening on" "$1" && return 0; sleep 0.05; done
    echo "receive never listened:"; cat "$1"; return 1
}
out=$(mktemp)
"$zc" receive --listen 10.77.9.2:9000 --move-device zct-b --address 10.77.9.2/24 --count 1 >"$out" 2>&1 &
pid=$!
listening "$out"
printf 'hello' >/dev/tcp/10.77.9.2/9000 || true
wait $pid || echo "receive exited with $?"
cat "$out"
state count
"$zc" receive --listen 10.77.9.2:9000 --move-device zct-b --address 10.77.9.2/24 >"$out" 2>&1 &
pid=$!
listening "$out"
kill -TERM $pid
wait $pid || echo "receive exited with $?"
cat "$out"
state signal
rm -f "$out"
"#;

#[test]
fn a_moved_device_comes_back_up_with_its_addresses() {
    if !common::bpf_available("a_moved_device_comes_back_up_with_its_addresses") {
        return;
    }
    let out = Command::new("unshare")
        .args(["--net", "bash", "-c", SCRIPT, &common::bin()])
        .output()
        .expect("unshare runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for end in ["count", "signal"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("state {end}:")))
            .unwrap_or_else(|| panic!("no state after {end}:\n{text}"));
        let flags = line.rsplit("flags ").next().unwrap_or_default();
        assert!(
            line.contains("10.77.9.2/24")
                && flags.trim_matches(['<', '>']).split(',').any(|f| f == "UP"),
            "after {end}, zct-b is not back up with 10.77.9.2/24: {line}\n{text}"
        );
    }
    assert!(text.contains("interrupted by SIGTERM"), "{text}");
    assert!(
        text.contains("goes back to the namespace it came from, up, with 10.77.9.2/24"),
        "{text}"
    );
}
