//! Network devices, as the kernel sees them: which device the kernel routes a destination
//! through (route netlink, no `ip`), what it is (loopback, a virtual pair, or a device that
//! reads frames from memory by DMA), its offloads (ethtool ioctls, no `ethtool`), and
//! scatter-gather turned off and back on.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A device a route goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub index: u32,
    /// The driver bound to the device behind it (virtio_net, e1000e, mlx5_core...); None for
    /// software devices (lo, veth, bridges), which have no device behind them.
    pub driver: Option<String>,
}

impl Device {
    /// Whether the device reads the frames it sends from memory itself (DMA; virtio's host
    /// side reads the guest's memory the same way). Loopback and veth pass the buffers on by
    /// reference to the receiving socket: nothing reads them.
    pub fn dma(&self) -> bool {
        self.driver.is_some()
    }

    pub fn by_index(index: u32) -> Result<Device, String> {
        let mut buf = [0u8; nix::libc::IF_NAMESIZE];
        // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into buf.
        let p = unsafe { nix::libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(format!(
                "no device with index {index}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).into_owned();
        let driver = std::fs::read_link(format!("/sys/class/net/{name}/device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        Ok(Device {
            name,
            index,
            driver,
        })
    }
}

/// Offloads of a device, as the ethtool ioctls report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub sg: bool,
    pub tso: bool,
    pub gso: bool,
    pub tx_checksum: bool,
}

impl Features {
    pub fn read(dev: &str) -> Result<Features, String> {
        Ok(Features {
            sg: ethtool(dev, ETHTOOL_GSG, None)?,
            tso: ethtool(dev, ETHTOOL_GTSO, None)?,
            gso: ethtool(dev, ETHTOOL_GGSO, None)?,
            tx_checksum: ethtool(dev, ETHTOOL_GTXCSUM, None)?,
        })
    }

    pub fn describe(&self) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "scatter-gather {}, TSO {}, GSO {}, tx checksum offload {}",
            on(self.sg),
            on(self.tso),
            on(self.gso),
            on(self.tx_checksum)
        )
    }
}

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_GSG: u32 = 0x18;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_GGSO: u32 = 0x23;

/// One ethtool_value ioctl (SIOCETHTOOL) on `dev` in the calling thread's network namespace:
/// a get returns the value, a set (`value` Some) returns it as asked.
fn ethtool(dev: &str, cmd: u32, value: Option<bool>) -> Result<bool, String> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    const SIOCETHTOOL: u64 = 0x8946;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let mut v = EthtoolValue {
        cmd,
        data: value.map_or(0, u32::from),
    };
    let mut req = IfReq {
        name: [0; 16],
        data: &mut v,
        _pad: [0; 16],
    };
    let name = dev.as_bytes();
    if name.len() >= 16 {
        return Err(format!("interface name {dev} too long"));
    }
    req.name[..name.len()].copy_from_slice(name);
    // SAFETY: SIOCETHTOOL reads the ifreq and the ethtool_value it points to, both alive here.
    let rc = unsafe { nix::libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(value.unwrap_or(v.data != 0))
}

/// Sets scatter-gather on `dev` and checks that the device took it.
pub fn set_sg(dev: &str, on: bool) -> Result<(), String> {
    ethtool(dev, ETHTOOL_SSG, Some(on))?;
    let now = ethtool(dev, ETHTOOL_GSG, None)?;
    if now != on {
        return Err(format!(
            "asked for scatter-gather {}, the device reports {}",
            if on { "on" } else { "off" },
            if now { "on" } else { "off" }
        ));
    }
    Ok(())
}

/// Scatter-gather turned off on a device for a run, and on again when this is dropped or at
/// cleanup (Ctrl-C, an error, a panic), whichever comes first.
pub struct SgOff {
    dev: String,
}

impl SgOff {
    pub fn new(dev: &str) -> Result<SgOff, String> {
        if !ethtool(dev, ETHTOOL_GSG, None)? {
            return Err(format!(
                "scatter-gather is already off on {dev}: zc-trace would not know to turn it on \
                 again; turn it on first (ethtool -K {dev} sg on)"
            ));
        }
        crate::resources::cleanup::unless_closing(|r| {
            // Registered first: cleanup restores it even if the set is cut short.
            let owned = dev.to_string();
            r.undo(sg_key(dev), move || {
                if let Err(e) = set_sg(&owned, true) {
                    eprintln!("zc-trace: could not turn scatter-gather on again on {owned}: {e}");
                }
            });
            set_sg(dev, false)
        })
        .map_err(|_| "interrupted".to_string())??;
        Ok(SgOff {
            dev: dev.to_string(),
        })
    }
}

impl Drop for SgOff {
    fn drop(&mut self) {
        if let Err(e) = set_sg(&self.dev, true) {
            log::warn!(
                "could not turn scatter-gather on again on {}: {e}",
                self.dev
            );
        }
        crate::resources::cleanup::forget(&sg_key(&self.dev));
    }
}

/// The cleanup registry's key for `dev`'s scatter-gather.
fn sg_key(dev: &str) -> String {
    format!("scatter-gather on {dev}")
}

/// The device the kernel routes `dst` through, in the calling thread's network namespace
/// (RTM_GETROUTE, as `ip route get` asks).
pub fn route_device(dst: IpAddr) -> Result<Device, String> {
    use rtnetlink::packet_route::route::RouteAttribute;
    let index = with_netlink(|rt, handle| {
        use futures::TryStreamExt;
        let msg = match dst {
            IpAddr::V4(a) => rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .build(),
            IpAddr::V6(a) => rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build(),
        };
        let routes: Vec<_> = rt
            .block_on(handle.route().get(msg).execute().try_collect())
            .map_err(|e| format!("route to {dst}: {e}"))?;
        routes
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
            .ok_or_else(|| format!("the kernel has no route to {dst}"))
    })?;
    Device::by_index(index)
}

/// The devices of this namespace's default routes (IPv4 and IPv6, main table).
pub fn default_route_devices() -> Result<Vec<String>, String> {
    use rtnetlink::packet_route::route::RouteAttribute;
    let indexes = with_netlink(|rt, handle| {
        use futures::TryStreamExt;
        let mut out = Vec::new();
        for v6 in [false, true] {
            let msg = if v6 {
                rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
            } else {
                rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
            };
            let routes: Vec<_> = rt
                .block_on(handle.route().get(msg).execute().try_collect())
                .map_err(|e| format!("listing routes: {e}"))?;
            for r in routes {
                if r.header.destination_prefix_length != 0 {
                    continue;
                }
                out.extend(r.attributes.iter().filter_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                }));
            }
        }
        Ok(out)
    })?;
    Ok(indexes
        .into_iter()
        .filter_map(|i| Device::by_index(i).ok().map(|d| d.name))
        .collect())
}

/// A device `isolate` moved into a namespace of its own, with what it had in the namespace
/// it came from: `restore` puts it back there. Without that, the namespace's end took it
/// away: the kernel destroys a virtual device (veth) with its namespace, and sends a physical
/// one to the initial namespace, down, without its addresses.
pub struct Isolated {
    pub dev: String,
    /// The namespace it came from (held open: it is moved back by descriptor).
    outer: std::fs::File,
    was_up: bool,
    /// Its addresses there, with their prefix lengths.
    addresses: Vec<(IpAddr, u8)>,
}

/// Moves `dev` into a network namespace of its own, which the calling thread enters, and gives
/// it `ip/prefix` there (with lo up): the receiving end of two ports of one machine cabled to
/// each other, so that traffic between them crosses the wire instead of staying local. What it
/// had (up or down, its addresses) is recorded first, for `Isolated::restore`.
pub fn isolate(dev: &str, ip: std::net::Ipv4Addr, prefix: u8) -> Result<Isolated, String> {
    use rtnetlink::packet_route::address::AddressAttribute;
    use rtnetlink::packet_route::link::LinkFlags;
    use rtnetlink::LinkUnspec;
    let outer = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
    let outer_file = std::fs::File::open(&outer).map_err(|e| format!("{outer}: {e}"))?;
    let index = nix::net::if_::if_nametoindex(dev).map_err(|e| format!("no device {dev}: {e}"))?;
    let (was_up, addresses) = with_netlink(|rt, handle| {
        use futures::TryStreamExt;
        let links: Vec<_> = rt
            .block_on(
                handle
                    .link()
                    .get()
                    .match_index(index)
                    .execute()
                    .try_collect(),
            )
            .map_err(|e| format!("reading {dev}: {e}"))?;
        let up = links.iter().any(|l| l.header.flags.contains(LinkFlags::Up));
        let addrs: Vec<_> = rt
            .block_on(
                handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect(),
            )
            .map_err(|e| format!("reading {dev}'s addresses: {e}"))?;
        let addresses = addrs
            .iter()
            .filter_map(|a| {
                // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on
                // point-to-point links); IPv6 has only IFA_ADDRESS.
                let local = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                });
                Some((local.or(addr)?, a.header.prefix_len))
            })
            .collect::<Vec<_>>();
        Ok((up, addresses))
    })?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
    let inner = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
    let inner_file = std::fs::File::open(&inner).map_err(|e| format!("{inner}: {e}"))?;
    let outer_path = format!("/proc/self/fd/{}", outer_file.as_raw_fd());
    with_netlink_in(&outer_path, |rt, handle| {
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(inner_file.as_raw_fd())
            .build();
        rt.block_on(handle.link().set(msg).execute())
            .map_err(|e| format!("moving {dev} into the new namespace: {e}"))
    })?;
    let isolated = Isolated {
        dev: dev.to_string(),
        outer: outer_file,
        was_up,
        addresses,
    };
    with_netlink(|rt, handle| {
        let index =
            nix::net::if_::if_nametoindex(dev).map_err(|e| format!("no device {dev}: {e}"))?;
        rt.block_on(handle.address().add(index, ip.into(), prefix).execute())
            .map_err(|e| format!("adding {ip}/{prefix} to {dev}: {e}"))?;
        for name in [dev, "lo"] {
            let msg = LinkUnspec::new_with_name(name).up().build();
            rt.block_on(handle.link().set(msg).execute())
                .map_err(|e| format!("setting {name} up: {e}"))?;
        }
        Ok(())
    })
    // On an error here the device goes back at once.
    .inspect_err(|_| {
        let _ = isolated.restore();
    })?;
    Ok(isolated)
}

impl Isolated {
    /// What `restore` gives back, and what it does not, in words.
    pub fn describe(&self) -> String {
        format!(
            "when zc-trace receive exits, {} goes back to the namespace it came from, {}, with \
             {}; routes of its own beyond its addresses' are not restored, and a kill -9 of \
             zc-trace receive cannot do this (a veth end is then destroyed, a physical device \
             returns down and without addresses)",
            self.dev,
            if self.was_up { "up" } else { "down" },
            if self.addresses.is_empty() {
                "no addresses (it had none)".to_string()
            } else {
                self.addresses
                    .iter()
                    .map(|(ip, p)| format!("{ip}/{p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    }

    /// Moves the device back to the namespace it came from (from a thread in its own), and
    /// there sets it up again if it was, with its addresses.
    pub fn restore(&self) -> Result<(), String> {
        use rtnetlink::LinkUnspec;
        let dev = &self.dev;
        with_netlink(|rt, handle| {
            let index = nix::net::if_::if_nametoindex(dev.as_str())
                .map_err(|e| format!("no device {dev}: {e}"))?;
            let msg = LinkUnspec::new_with_index(index)
                .setns_by_fd(self.outer.as_raw_fd())
                .build();
            rt.block_on(handle.link().set(msg).execute())
                .map_err(|e| format!("moving {dev} back: {e}"))
        })?;
        let outer_path = format!("/proc/self/fd/{}", self.outer.as_raw_fd());
        with_netlink_in(&outer_path, |rt, handle| {
            let index = nix::net::if_::if_nametoindex(dev.as_str())
                .map_err(|e| format!("no device {dev} back home: {e}"))?;
            for &(ip, prefix) in &self.addresses {
                match rt.block_on(handle.address().add(index, ip, prefix).execute()) {
                    Ok(()) => {}
                    // Already there (an IPv6 link-local address the kernel made again).
                    Err(rtnetlink::Error::NetlinkError(m))
                        if m.raw_code() == -nix::libc::EEXIST => {}
                    Err(e) => return Err(format!("giving {dev} back {ip}/{prefix}: {e}")),
                }
            }
            if self.was_up {
                let msg = LinkUnspec::new_with_index(index).up().build();
                rt.block_on(handle.link().set(msg).execute())
                    .map_err(|e| format!("setting {dev} up again: {e}"))?;
            }
            Ok(())
        })
    }
}

/// Runs `f` with a route netlink connection on a current-thread runtime of its own, on a
/// thread of its own (so it neither needs nor disturbs the caller's runtime) that shares the
/// caller's network namespace.
fn with_netlink<T: Send>(
    f: impl FnOnce(&tokio::runtime::Runtime, &rtnetlink::Handle) -> Result<T, String> + Send,
) -> Result<T, String> {
    let ns = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
    with_netlink_in(&ns, f)
}

/// `with_netlink` in the network namespace of the file `ns`.
fn with_netlink_in<T: Send>(
    ns: &str,
    f: impl FnOnce(&tokio::runtime::Runtime, &rtnetlink::Handle) -> Result<T, String> + Send,
) -> Result<T, String> {
    let ns = ns.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            // The caller's thread may be in another namespace than the process (the veth
            // sink's sender): this thread joins it.
            let f_ns = std::fs::File::open(Path::new(&ns)).map_err(|e| format!("{ns}: {e}"))?;
            nix::sched::setns(
                std::os::fd::AsFd::as_fd(&f_ns),
                nix::sched::CloneFlags::CLONE_NEWNET,
            )
            .map_err(|e| format!("setns: {e}"))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| format!("runtime: {e}"))?;
            let (connection, handle, _) = {
                let _in = rt.enter();
                rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?
            };
            rt.spawn(connection);
            f(&rt, &handle)
        })
        .join()
        .unwrap_or_else(|_| Err("the netlink thread panicked".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_routed_through_lo_and_has_no_dma() {
        let d = route_device("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(d.name, "lo");
        assert!(!d.dma(), "{d:?}");
        assert_eq!(Device::by_index(d.index).unwrap(), d);
    }
}
