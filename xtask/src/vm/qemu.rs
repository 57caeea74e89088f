//! Booting a kernel and an initramfs under qemu (TCG) and reading the serial console.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::Result;

use super::arch::GuestArch;
use super::tools::Tools;

/// How the errors name it.
pub const QEMU: &str = "qemu";

/// What a boot left behind.
pub struct Boot {
    /// Everything the guest wrote to its serial console, with CR LF turned into LF.
    pub console: String,
    /// qemu's own stderr.
    pub stderr: String,
    pub wall: Duration,
    pub timed_out: bool,
    /// qemu's exit status, when it exited by itself.
    pub exit: Option<std::process::ExitStatus>,
}

/// The qemu command line; `disk` is a raw image attached as a virtio disk (`/dev/vda`); with
/// `nic_pair`, two network devices cabled to each other (`nic_pair_args`).
pub fn qemu_command(
    tools: &Tools,
    arch: GuestArch,
    vmlinuz: &Path,
    initrd: &Path,
    disk: Option<&Path>,
    nic_pair: bool,
) -> Result<Command> {
    let mut c = tools.qemu(arch)?;
    // One TCG thread for both vCPUs: with multi-threaded TCG (qemu 7.2), a 6.12 guest took an
    // int3 oops in __schedule while the kernel patched the sched_switch tracepoint's jump label
    // for the tp_btf program (cross-CPU code modification), panicking the guest.
    c.args(["-accel", "tcg,thread=single"])
        .args(arch.machine_args())
        .args(["-m", "1024", "-smp", "2"])
        // The serial console on stdio; no network device but the NIC pair, if asked.
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("console={} panic=-1 quiet", arch.console()));
    if nic_pair {
        c.args(nic_pair_args()?);
    }
    if let Some(disk) = disk {
        let mut drive = std::ffi::OsString::from("file=");
        drive.push(disk);
        drive.push(",format=raw,if=virtio,cache=unsafe");
        c.arg("-drive").arg(drive);
    }
    Ok(c)
}

/// Two vmxnet3 NICs (eth0, eth1 in the guest) whose qemu backends are UDP sockets on
/// 127.0.0.1 sending to each other: a cable between two ports of the guest, of which the host
/// sees only loopback datagrams. vmxnet3, not virtio-net: a socket backend has no virtio-net
/// header, so qemu withdraws VIRTIO_NET_F_CSUM, and without it the virtio_net driver offers no
/// scatter-gather at all; qemu's vmxnet3 segments and checksums in software whatever the
/// backend, so the guest driver keeps SG and TSO (and ethtool can turn SG off). The device
/// reads every frame from guest memory, as a NIC's DMA would.
fn nic_pair_args() -> Result<Vec<String>> {
    // Free ports now; a collision before qemu binds them fails the boot, loudly.
    let port = || -> Result<u16> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp: {e}"))?;
        Ok(s.local_addr().map_err(|e| e.to_string())?.port())
    };
    let (a, b) = (port()?, port()?);
    let mut args = Vec::new();
    for (id, local, remote, mac) in [
        ("n0", a, b, "52:54:00:7a:63:01"),
        ("n1", b, a, "52:54:00:7a:63:02"),
    ] {
        args.push("-netdev".to_string());
        args.push(format!(
            "socket,id={id},udp=127.0.0.1:{remote},localaddr=127.0.0.1:{local}"
        ));
        args.push("-device".to_string());
        args.push(format!("vmxnet3,netdev={id},mac={mac}"));
    }
    Ok(args)
}

/// Boots and waits for the guest to power off, killing qemu after `timeout`. The console goes
/// to `log` as it arrives (and to stderr too with `echo`).
pub fn boot(mut cmd: Command, timeout: Duration, log: &Path, echo: bool) -> Result<Boot> {
    eprintln!("xtask: running {cmd:?}");
    let mut log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let start = Instant::now();
    let mut child = crate::util::die_with_parent(&mut cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let console_reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = log_file.write_all(&buf[..n]);
                    if echo {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                    }
                    all.extend_from_slice(&buf[..n]);
                }
            }
        }
        all
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        all
    });

    let (exit, timed_out) = wait_or_kill(&mut child, timeout)?;
    let wall = start.elapsed();
    let console = console_reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();
    Ok(Boot {
        console: String::from_utf8_lossy(&console)
            .replace("\r\n", "\n")
            .replace('\r', ""),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        wall,
        timed_out,
        exit,
    })
}

fn wait_or_kill(
    child: &mut Child,
    timeout: Duration,
) -> Result<(Option<std::process::ExitStatus>, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for {QEMU}: {e}"))?
        {
            return Ok((Some(status), false));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((None, true));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
