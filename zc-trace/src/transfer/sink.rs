//! Where the strategies send the payload: TCP over loopback (default), a UNIX stream socket, a
//! pipe (FIFO), a regular file, /dev/null, or TCP over a veth pair between two network
//! namespaces that zc-trace creates and removes itself (with `--no-sg` turning scatter-gather
//! off on the sending side, the article's "sendfile without SG-DMA" case).

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Serialize;

use crate::error::{EnvError, InputError, RunError};
use crate::resources::cleanup;
use crate::resources::private_dir::PrivateDir;
use crate::transfer::receiver::{Listen, Receiver, ReceiverMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    /// TCP to a receiver process on 127.0.0.1 (loopback: scatter-gather always on).
    Tcp,
    /// A UNIX stream socket to a receiver process.
    Unix,
    /// A named pipe (FIFO) read by a receiver process.
    Pipe,
    /// A new regular file in --tmpdir for every run.
    File,
    /// /dev/null.
    Null,
    /// TCP over a veth pair between two network namespaces made for the run.
    Veth,
    /// TCP to a receiver elsewhere (`--sink tcp:HOST:PORT`), through whatever device the
    /// kernel routes it to: `zc-trace receive` there, or any server that reads and discards.
    #[value(skip)]
    Remote,
}

impl SinkKind {
    /// The name the command line uses (`--sink pipe`).
    pub fn cli_name(self) -> &'static str {
        match self {
            SinkKind::Tcp => "tcp",
            SinkKind::Unix => "unix",
            SinkKind::Pipe => "pipe",
            SinkKind::File => "file",
            SinkKind::Null => "null",
            SinkKind::Veth => "veth",
            SinkKind::Remote => "tcp:HOST:PORT",
        }
    }

    /// Whether a copy site of `family` is on this sink's path.
    pub fn carries(self, family: crate::kernel::probes::Family) -> bool {
        use crate::kernel::probes::Family;
        match family {
            Family::Any => true,
            Family::Tcp => self.is_tcp(),
            Family::Unix => self == SinkKind::Unix,
        }
    }

    pub fn is_tcp(self) -> bool {
        matches!(self, SinkKind::Tcp | SinkKind::Veth | SinkKind::Remote)
    }
}

/// Everything needed to set a sink up.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub kind: SinkKind,
    /// HOST:PORT of a remote sink.
    pub remote: Option<String>,
    /// With --no-sg on a remote sink: turn it off even on the default route's device.
    pub force: bool,
    pub no_sg: bool,
    pub mode: ReceiverMode,
    pub tmpdir: PathBuf,
    pub buffer: usize,
}

/// A sink that is set up: per run, `open` gives the sender a descriptor and `finish` closes it
/// and says how many bytes arrived.
pub struct Sink {
    pub kind: SinkKind,
    target: Target,
    receiver: Option<Receiver>,
    /// Scatter-gather on the sending route, where the sink has a route.
    pub sg: Option<bool>,
    pub description: String,
    pub receiver_description: Option<String>,
    /// The device a remote sink's route goes through.
    pub device: Option<crate::transfer::nic::Device>,
    /// Its offloads, read once the sink is set up (after --no-sg).
    features: Option<crate::transfer::nic::Features>,
    _netns: Option<Netns>,
    _dir: Option<PrivateDir>,
    /// Scatter-gather turned off on a remote sink's device, until this is dropped.
    _sg_off: Option<crate::transfer::nic::SgOff>,
}

/// The device of a sink's route, in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SinkDevice {
    pub name: String,
    /// The driver of the device behind it; null for software devices.
    pub driver: Option<String>,
    /// Whether it reads the frames it sends from memory (DMA).
    pub dma: bool,
    /// Its offloads, as ethtool reports them.
    pub features: Option<String>,
}

enum Target {
    Tcp(SocketAddr),
    /// A remote sink: any server there; zc-trace receive answers with what it received.
    Remote(SocketAddr),
    /// The socket's path through the private directory's descriptor, and the receiver that
    /// must be at its other end.
    Unix {
        path: PathBuf,
        receiver: u32,
    },
    Fifo(crate::resources::private_dir::Entry),
    File(PathBuf),
    Null,
}

/// An open sink for one run.
pub struct SinkFd {
    pub fd: OwnedFd,
}

impl Sink {
    /// Sets the sink up. Runs on the sender thread: for veth it moves that thread into the
    /// sending namespace.
    pub fn start(opts: &SinkOptions) -> Result<Sink, crate::error::Error> {
        let mut sink = Sink {
            kind: opts.kind,
            target: Target::Null,
            receiver: None,
            sg: None,
            description: String::new(),
            receiver_description: None,
            device: None,
            features: None,
            _netns: None,
            _dir: None,
            _sg_off: None,
        };
        let receiver_mode = |sink: &mut Sink, listen: &Listen, netns: Option<&Path>| {
            let r = Receiver::spawn(listen, opts.mode, opts.buffer, netns)?;
            sink.receiver_description = Some(format!(
                "separate process, {}",
                opts.mode.describe(opts.buffer)
            ));
            Ok::<Receiver, RunError>(r)
        };
        match opts.kind {
            SinkKind::Tcp => {
                let listen = Listen::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
                let r = receiver_mode(&mut sink, &listen, None)?;
                sink.target = Target::Tcp(parse_addr(&r.ready)?);
                sink.receiver = Some(r);
                sink.sg = Some(true);
                sink.description = "TCP over loopback (127.0.0.1; scatter-gather always on)".into();
            }
            // The socket and the FIFO live in a private directory of --tmpdir, reached only
            // through its descriptor (`private_dir`): whoever can write --tmpdir must not be
            // able to swap them for a path of their choosing.
            SinkKind::Unix => {
                let dir = private_dir(&opts.tmpdir)?;
                let path = dir.proc_path("sink.sock");
                let r = receiver_mode(&mut sink, &Listen::Unix(path.clone()), None)?;
                dir.entry("sink.sock", nix::sys::stat::SFlag::S_IFSOCK)
                    .map_err(RunError::Receiver)?;
                sink.target = Target::Unix {
                    path,
                    receiver: r.pid(),
                };
                sink.receiver = Some(r);
                sink.description = "UNIX stream socket".into();
                sink._dir = Some(dir);
            }
            SinkKind::Pipe => {
                let dir = private_dir(&opts.tmpdir)?;
                let fifo = dir.make_fifo("sink.fifo").map_err(RunError::Receiver)?;
                let listen = Listen::Fifo(dir.proc_path("sink.fifo"));
                let r = receiver_mode(&mut sink, &listen, None)?;
                sink.receiver = Some(r);
                sink.target = Target::Fifo(fifo);
                sink.description = "pipe (FIFO) read by a separate process".into();
                sink._dir = Some(dir);
            }
            SinkKind::File => {
                sink.target = Target::File(opts.tmpdir.clone());
                sink.description =
                    format!("a new regular file in {} per run", opts.tmpdir.display());
            }
            SinkKind::Null => {
                sink.description = "/dev/null".into();
            }
            SinkKind::Veth => {
                let netns = Netns::create(!opts.no_sg)?;
                netns.enter_sender()?;
                let listen = Listen::Tcp(SocketAddr::from((netns.receiver_ip, 0)));
                let r = receiver_mode(&mut sink, &listen, Some(&netns.receiver_path()))?;
                sink.target = Target::Tcp(parse_addr(&r.ready)?);
                sink.receiver = Some(r);
                sink.sg = Some(netns.sg);
                sink.description = format!(
                    "TCP over a veth pair between two network namespaces zc-trace made \
                     (scatter-gather {} on the sending side, checked with ETHTOOL_GSG)",
                    if netns.sg { "on" } else { "off" }
                );
                sink._netns = Some(netns);
            }
            SinkKind::Remote => {
                let spec = opts.remote.as_deref().expect("a remote sink has HOST:PORT");
                sink.start_remote(spec, opts.no_sg, opts.force)?;
            }
        }
        Ok(sink)
    }

    /// `--sink tcp:HOST:PORT`: the route's device, scatter-gather off on it with --no-sg
    /// (refused on the default route's device unless --force), and its offloads.
    fn start_remote(
        &mut self,
        spec: &str,
        no_sg: bool,
        force: bool,
    ) -> Result<(), crate::error::Error> {
        use std::net::ToSocketAddrs;
        let addr = spec
            .to_socket_addrs()
            .map_err(|e| InputError::Usage(format!("--sink tcp:{spec}: {e}")))?
            .next()
            .ok_or_else(|| InputError::Usage(format!("--sink tcp:{spec}: no address")))?;
        let dev = crate::transfer::nic::route_device(addr.ip())
            .map_err(|e| EnvError::Netns(format!("--sink tcp:{spec}: {e}")))?;
        if no_sg {
            if !dev.dma() {
                return Err(InputError::Usage(format!(
                    "--no-sg: {spec} is reached through {}, which no device reads by DMA \
                     (loopback or a virtual device); for the no-SG case without a NIC use \
                     --sink veth --no-sg",
                    dev.name
                ))
                .into());
            }
            let defaults = crate::transfer::nic::default_route_devices()
                .map_err(|e| EnvError::Netns(format!("the default route: {e}")))?;
            if defaults.contains(&dev.name) && !force {
                return Err(InputError::Usage(format!(
                    "--no-sg would turn scatter-gather off on {}, the device of the default \
                     route, which carries this host's other traffic too; add --force to do it \
                     anyway (zc-trace turns it on again when it exits, Ctrl-C included)",
                    dev.name
                ))
                .into());
            }
            self._sg_off =
                Some(crate::transfer::nic::SgOff::new(&dev.name).map_err(|e| {
                    EnvError::Netns(format!("scatter-gather on {}: {e}", dev.name))
                })?);
        }
        let features = crate::transfer::nic::Features::read(&dev.name).ok();
        self.sg = features.map(|f| f.sg);
        // The address once, when HOST is one; a name with the address it resolved to.
        let to = if spec == addr.to_string() {
            spec.to_string()
        } else {
            format!("{spec} ({addr})")
        };
        self.description = format!(
            "TCP to {to} through {} ({}{})",
            dev.name,
            match &dev.driver {
                Some(d) => format!("driver {d}, reads frames by DMA"),
                None => "no device behind it: nothing reads frames by DMA".into(),
            },
            features.map_or(String::new(), |f| format!("; {}", f.describe()))
        );
        self.target = Target::Remote(addr);
        self.device = Some(dev);
        self.features = features;
        Ok(())
    }

    /// The route device, for the report.
    pub fn device_report(&self) -> Option<SinkDevice> {
        self.device.as_ref().map(|d| SinkDevice {
            name: d.name.clone(),
            driver: d.driver.clone(),
            dma: d.dma(),
            features: self.features.map(|f| f.describe()),
        })
    }

    fn private(&self) -> &PrivateDir {
        self._dir
            .as_ref()
            .expect("a unix or pipe sink has a private directory")
    }

    pub fn receiver_pid(&self) -> Option<u32> {
        self.receiver.as_ref().map(Receiver::pid)
    }

    pub fn open(&self) -> std::io::Result<SinkFd> {
        let fd: OwnedFd = match &self.target {
            Target::Tcp(a) | Target::Remote(a) => TcpStream::connect(a)?.into(),
            Target::Unix { path, receiver } => {
                self.private()
                    .check_in_place()
                    .map_err(std::io::Error::other)?;
                let stream = UnixStream::connect(path)?;
                check_peer(&stream, *receiver)?;
                stream.into()
            }
            Target::Fifo(entry) => self.private().open_fifo_for_writing(entry)?,
            Target::File(dir) => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::libc::O_TMPFILE)
                .mode(0o600)
                .open(dir)?
                .into(),
            Target::Null => std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")?
                .into(),
        };
        Ok(SinkFd { fd })
    }

    /// Ends the run's stream and closes its descriptor: the bytes that arrived, where the
    /// sink can tell, and for TCP the bytes the kernel retransmitted.
    pub fn finish(&mut self, fd: SinkFd) -> Result<Finished, RunError> {
        let size = match self.target {
            Target::File(_) => Some(
                nix::sys::stat::fstat(fd.fd.as_raw_fd())
                    .map_err(|e| RunError::Receiver(format!("fstat of the sink file: {e}")))?
                    .st_size as u64,
            ),
            _ => None,
        };
        // EOF for the receiver. A TCP socket is only shut down for writing, so that its
        // tcp_info can be read once the receiver has it all.
        let socket = if matches!(self.target, Target::Tcp(_) | Target::Remote(_)) {
            nix::sys::socket::shutdown(fd.fd.as_raw_fd(), nix::sys::socket::Shutdown::Write)
                .map_err(|e| RunError::Receiver(format!("shutdown of the sink socket: {e}")))?;
            Some(fd)
        } else {
            drop(fd);
            None
        };
        let received = match (&mut self.receiver, &socket, &self.target) {
            (Some(r), ..) => Some(r.wait_done()?),
            (None, Some(s), Target::Remote(_)) => remote_report(s),
            _ => size,
        };
        let tcp = socket.as_ref().map(tcp_facts).transpose()?;
        Ok(Finished {
            received,
            retransmitted: tcp.map(|t| t.0),
            send_time: tcp.map(|t| t.1),
        })
    }
}

/// What arrived at the sink, and what TCP had to send again.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub received: Option<u64>,
    /// tcp_info.tcpi_bytes_retrans (TCP sinks): payload bytes the kernel sent a second time.
    /// Each goes through the device's transmit again, so on a route without scatter-gather
    /// the CPU copies it again.
    pub retransmitted: Option<u64>,
    /// TCP sinks: how long the connection had data to send, and how much of it the peer's
    /// receive window held it back.
    pub send_time: Option<SendTime>,
}

/// tcp_info's chrono counters (Linux 4.10+) for one connection, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendTime {
    /// tcpi_busy_time: time with data in flight or queued.
    pub busy_us: u64,
    /// tcpi_rwnd_limited: of that, time stalled because the receiver's window was full, so
    /// the receiver, not the sending strategy, set the pace.
    pub rwnd_limited_us: u64,
}

impl SendTime {
    /// The share of the busy time the receiver held the sender back (0 when never busy).
    pub fn receiver_share(&self) -> f64 {
        if self.busy_us == 0 {
            0.0
        } else {
            self.rwnd_limited_us as f64 / self.busy_us as f64
        }
    }
}

/// What `zc-trace receive` answers once it has read the stream to its end ("zc-trace received
/// N"); None from any other server (it may send nothing, or never close: 10 s at most).
fn remote_report(fd: &SinkFd) -> Option<u64> {
    use std::io::Read;
    let dup = fd.fd.try_clone().ok()?;
    let mut stream = TcpStream::from(dup);
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let mut answer = Vec::new();
    let _ = (&mut stream).take(256).read_to_end(&mut answer);
    crate::transfer::receiver::parse_report(&String::from_utf8_lossy(&answer))
}

/// The socket's tcpi_bytes_retrans and its send time, from getsockopt(TCP_INFO) (Linux
/// 4.19+).
fn tcp_facts(fd: &SinkFd) -> Result<(u64, SendTime), RunError> {
    // SAFETY: an all-zero tcp_info is valid; getsockopt fills at most `len` bytes of it.
    let mut info: nix::libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<nix::libc::tcp_info>() as nix::libc::socklen_t;
    let r = unsafe {
        nix::libc::getsockopt(
            fd.fd.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_INFO,
            (&mut info as *mut nix::libc::tcp_info).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(RunError::Receiver(format!(
            "getsockopt(TCP_INFO) on the sink socket: {}",
            std::io::Error::last_os_error()
        )));
    }
    let end = std::mem::offset_of!(nix::libc::tcp_info, tcpi_bytes_retrans) + 8;
    if (len as usize) < end {
        return Err(RunError::Receiver(
            "this kernel's tcp_info has no tcpi_bytes_retrans (Linux 4.19+)".into(),
        ));
    }
    Ok((
        info.tcpi_bytes_retrans,
        SendTime {
            busy_us: info.tcpi_busy_time,
            rwnd_limited_us: info.tcpi_rwnd_limited,
        },
    ))
}

fn parse_addr(ready: &str) -> Result<SocketAddr, RunError> {
    ready
        .parse()
        .map_err(|e| RunError::Receiver(format!("bad address {ready:?}: {e}")))
}

/// A private directory in `tmpdir` (`private_dir`), its errors as --tmpdir's.
fn private_dir(tmpdir: &Path) -> Result<PrivateDir, InputError> {
    PrivateDir::create(tmpdir, "sink").map_err(|reason| InputError::TmpDir {
        path: tmpdir.to_path_buf(),
        reason,
    })
}

/// The process at the other end of a UNIX socket must be the receiver zc-trace started: a
/// path is only a name, and a listener of someone else's must get nothing.
fn check_peer(stream: &UnixStream, receiver: u32) -> std::io::Result<()> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    if cred.pid() != receiver as i32 {
        return Err(std::io::Error::other(format!(
            "the UNIX socket's listener is process {} (uid {}), not zc-trace's receiver              (process {receiver}); nothing was sent",
            cred.pid(),
            cred.uid()
        )));
    }
    Ok(())
}

/// Two network namespaces joined by a veth pair, on addresses that exist only inside them.
struct Netns {
    sender: String,
    receiver: String,
    sender_dev: String,
    receiver_ip: Ipv4Addr,
    sg: bool,
}

/// Where `ip netns` keeps its named namespaces.
use crate::resources::names::NETNS_DIR;

/// Fails if a namespace of one of these names already exists in `dir`.
fn unclaimed(dir: &Path, names: &[&str]) -> Result<(), String> {
    match names.iter().find(|n| dir.join(n).exists()) {
        None => Ok(()),
        Some(n) => Err(format!(
            "network namespace {n} already exists and was not made by this run; if it is a \
             leftover of an earlier zc-trace, `zc-trace cleanup` removes it (or `ip netns del \
             {n}`)"
        )),
    }
}

const SENDER_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 203, 1);
const RECEIVER_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 203, 2);

impl Netns {
    fn create(sg: bool) -> Result<Self, crate::error::Error> {
        let id = std::process::id();
        let [sender, receiver] = crate::resources::names::netns_names();
        let n = Netns {
            sender,
            receiver,
            sender_dev: format!("zct{id}tx"),
            receiver_ip: RECEIVER_IP,
            sg,
        };
        let receiver_dev = format!("zct{id}rx");
        // A namespace of that name that exists already is not this run's: refuse, and never
        // register it, so that cleanup cannot delete what it did not make.
        unclaimed(Path::new(NETNS_DIR), &[&n.sender, &n.receiver]).map_err(EnvError::Netns)?;
        let interrupted = |_| EnvError::Netns("interrupted while the namespaces were made".into());
        for name in [&n.sender, &n.receiver] {
            cleanup::unless_closing(|registry| {
                // Registered before it is made: cleanup waits for the step, so a signal that
                // arrives while the namespace is made still removes whatever part was made.
                let path = Path::new(NETNS_DIR).join(name);
                let owned = name.clone();
                registry.undo(format!("network namespace {name}"), move || {
                    if let Err(e) = crate::resources::mounts::delete_netns(&path) {
                        log::warn!("could not delete network namespace {owned}: {e}");
                    }
                });
                add_netns(name)
            })
            .map_err(interrupted)??;
        }
        // Each step below makes something inside the namespaces (which take it with them), and
        // runs, like the steps above, either wholly before cleanup or not at all.
        let step = |nl: &Netlink, what: &str, f: &dyn Fn(&Netlink) -> Result<(), String>| {
            cleanup::unless_closing(|_| f(nl))
                .map_err(interrupted)?
                .map_err(|e| EnvError::Netns(format!("{what} in {}: {e}", nl.ns)))
        };
        let receiver_ns = netns_file(&n.receiver)?;
        in_netns(&n.sender, |nl| {
            step(
                nl,
                &format!(
                    "creating veth {} (peer {receiver_dev} in {})",
                    n.sender_dev, n.receiver
                ),
                &|nl| nl.add_veth(&n.sender_dev, &receiver_dev, receiver_ns.as_fd()),
            )?;
            step(
                nl,
                &format!("adding {SENDER_IP}/30 to {}", n.sender_dev),
                &|nl| nl.add_address(&n.sender_dev, SENDER_IP, 30),
            )?;
            step(nl, "setting lo up", &|nl| nl.up("lo"))?;
            step(nl, &format!("setting {} up", n.sender_dev), &|nl| {
                nl.up(&n.sender_dev)
            })
        })?;
        in_netns(&n.receiver, |nl| {
            step(
                nl,
                &format!("adding {RECEIVER_IP}/30 to {receiver_dev}"),
                &|nl| nl.add_address(&receiver_dev, RECEIVER_IP, 30),
            )?;
            step(nl, "setting lo up", &|nl| nl.up("lo"))?;
            step(nl, &format!("setting {receiver_dev} up"), &|nl| {
                nl.up(&receiver_dev)
            })
        })?;
        Ok(n)
    }

    fn receiver_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.receiver)
    }

    /// Moves the calling thread (only it) into the sending namespace, then sets and checks
    /// scatter-gather on the sending device.
    fn enter_sender(&self) -> Result<(), crate::error::Error> {
        let f = netns_file(&self.sender)?;
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| EnvError::Netns(format!("setns into {}: {e}", self.sender)))?;
        crate::transfer::nic::set_sg(&self.sender_dev, self.sg)
            .map_err(|e| EnvError::Netns(format!("scatter-gather on {}: {e}", self.sender_dev)))?;
        Ok(())
    }
}

/// The file of the named network namespace, open (for setns or IFLA_NET_NS_FD).
fn netns_file(name: &str) -> Result<File, EnvError> {
    let path = Path::new(NETNS_DIR).join(name);
    File::open(&path).map_err(|source| EnvError::Read { path, source })
}

/// Makes the named network namespace /run/netns/NAME as `ip netns add` does, with no `ip`: a
/// thread of its own `unshare`s a new network namespace, creates the empty file and
/// bind-mounts its namespace on it, then ends (the mount keeps the namespace alive). The file
/// appears only once the namespace exists; a file whose mount failed is removed by cleanup.
fn add_netns(name: &str) -> Result<(), EnvError> {
    use std::os::unix::fs::DirBuilderExt;
    let fail = |what: String| EnvError::Netns(format!("making network namespace {name}: {what}"));
    let dir = Path::new(NETNS_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    share_mounts(dir);
    let path = dir.join(name);
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o000)
                .open(&path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
            nix::mount::mount(
                Some(own.as_str()),
                &path,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mounting {own} on {}: {e}", path.display()))
        })
        .join()
        .unwrap_or_else(|_| Err("its thread panicked".into()))
    })
    .map_err(fail)
}

/// As `ip netns add` does: makes /run/netns a mount point (bound on itself) with shared
/// propagation, so that deleting a namespace file also unmounts the copies other mount
/// namespaces made of it, and the namespace is freed. A namespace works without it: if it
/// fails, zc-trace goes on and says so in the debug log.
fn share_mounts(dir: &Path) {
    use nix::mount::{mount, MsFlags};
    let mut bound = false;
    loop {
        let e = match mount(
            None::<&str>,
            dir,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => return,
            Err(e) => e,
        };
        // EINVAL: not a mount point yet; make it one (once) and try again.
        if e != nix::errno::Errno::EINVAL || bound {
            log::debug!("mount --make-rshared {}: {e}", dir.display());
            return;
        }
        if let Err(e) = mount(
            Some(dir),
            dir,
            Some("none"),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            log::debug!("mount --rbind {0} {0}: {e}", dir.display());
            return;
        }
        bound = true;
    }
}

/// A route netlink connection in one network namespace (the socket belongs to the namespace of
/// the thread that opens it), driven by a current-thread runtime of its own: zc-trace's main
/// runtime may be another kind, and this runs on a thread of its own.
struct Netlink<'a> {
    ns: &'a str,
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
}

/// Runs `work` with a netlink connection in the named namespace, on a thread that enters it
/// and ends with `work` (the calling thread stays where it is).
fn in_netns<T: Send>(
    ns: &str,
    work: impl FnOnce(&Netlink) -> Result<T, EnvError> + Send,
) -> Result<T, EnvError> {
    let fail = |what: String| EnvError::Netns(format!("netlink in {ns}: {what}"));
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = netns_file(ns)?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| fail(format!("setns: {e}")))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| fail(format!("runtime: {e}")))?;
            let (connection, handle, _) = {
                let _in = rt.enter();
                rtnetlink::new_connection().map_err(|e| fail(format!("socket: {e}")))?
            };
            rt.spawn(connection);
            work(&Netlink { ns, rt, handle })
        })
        .join()
        .unwrap_or_else(|_| Err(fail("its thread panicked".into())))
    })
}

/// A netlink error as one line: the kernel's errno, where it sent one.
fn netlink_error(e: rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        e => e.to_string(),
    }
}

impl Netlink<'_> {
    /// `ip link add DEV type veth peer name PEER netns PEER_NS`: DEV here, PEER made straight
    /// in the other namespace.
    fn add_veth(&self, dev: &str, peer: &str, peer_ns: BorrowedFd) -> Result<(), String> {
        use rtnetlink::packet_route::link::{InfoData, InfoVeth};
        let peer = rtnetlink::LinkUnspec::new_with_name(peer)
            .setns_by_fd(peer_ns.as_raw_fd())
            .build();
        let msg = rtnetlink::LinkVeth::new(dev, "")
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(netlink_error)
    }

    /// `ip addr add IP/PREFIX dev DEV`.
    fn add_address(&self, dev: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), String> {
        let index = self.index(dev)?;
        self.rt
            .block_on(
                self.handle
                    .address()
                    .add(index, ip.into(), prefix)
                    .execute(),
            )
            .map_err(netlink_error)
    }

    /// `ip link set DEV up`.
    fn up(&self, dev: &str) -> Result<(), String> {
        let msg = rtnetlink::LinkUnspec::new_with_name(dev).up().build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(netlink_error)
    }

    /// The device's index, asked of this thread's namespace (SIOCGIFINDEX): a netlink dump
    /// would parse every attribute of the link, and the parser warns about those newer than
    /// it.
    fn index(&self, dev: &str) -> Result<u32, String> {
        nix::net::if_::if_nametoindex(dev).map_err(|e| format!("no device {dev}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace name that exists already fails the run before anything is registered for
    /// deletion (the hardening issue saw zc-trace delete namespaces it had not made).
    #[test]
    fn an_existing_namespace_is_refused_not_claimed() {
        let dir = std::env::temp_dir().join(format!("zc-trace-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(unclaimed(&dir, &["zc-trace-1-tx", "zc-trace-1-rx"]).is_ok());
        std::fs::write(dir.join("zc-trace-1-rx"), "").unwrap();
        let e = unclaimed(&dir, &["zc-trace-1-tx", "zc-trace-1-rx"]).unwrap_err();
        assert!(e.contains("zc-trace-1-rx already exists"), "{e}");
        assert!(e.contains("ip netns del zc-trace-1-rx"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
