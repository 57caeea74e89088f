//! `zc-trace receive --listen ADDR:PORT`: the far end of a remote sink, on another machine
//! (`--move-device` first moves a device into a namespace of its own, and back at the end).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;

use crate::error::RunError;
use crate::transfer::receiver::{report_line, Consumer, ReceiverMode};

/// `zc-trace receive --listen ADDR:PORT`: the far end of a remote sink, on another machine.
/// Reads each connection to its end as the mode says, answers the sender with the byte
/// count (so the run checks that every byte arrived), and prints what it received.
pub fn receive(
    args: &crate::cli::ReceiveArgs,
) -> Result<std::process::ExitCode, crate::error::Error> {
    use crate::error::{EnvError, Error, InputError};
    let addr: SocketAddr = args.listen.parse().map_err(|e| {
        InputError::Usage(format!(
            "--listen {}: {e} (expected ADDR:PORT, e.g. 0.0.0.0:9000)",
            args.listen
        ))
    })?;
    let _moved = match (&args.move_device, &args.address) {
        (Some(dev), Some(address)) => {
            let bad = || {
                InputError::Usage(format!(
                    "--address {address}: expected IP/PREFIX, e.g. 10.77.0.2/24"
                ))
            };
            let (ip, prefix) = address.split_once('/').ok_or_else(bad)?;
            let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
            let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
            let moved = MovedBack::isolate(dev, ip, prefix)
                .map_err(|e| EnvError::Netns(format!("--move-device {dev}: {e}")))?;
            crate::ui::output::println(&format!(
                "zc-trace receive: {dev} is in a network namespace of its own, as {address}; {}",
                moved.describe()
            ))
            .map_err(Error::Output)?;
            Some(moved)
        }
        _ => None,
    };
    let listener = TcpListener::bind(addr)
        .map_err(|e| EnvError::Netns(format!("cannot listen on {addr}: {e}")))?;
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| RunError::Receiver(format!("{what}: {e}"))
    };
    let local = listener.local_addr().map_err(io("listening"))?;
    crate::ui::output::println(&format!(
        "zc-trace receive: listening on {local} ({})",
        args.mode.describe(args.buffer)
    ))
    .map_err(Error::Output)?;
    // Checked once here, so that a thread's own set-up cannot fail for a reason it could
    // have had up front.
    Consumer::new(args.mode, args.buffer).map_err(io("setting up"))?;
    // One thread per connection: an idle or slow client must not hold the others up (one
    // idle connection used to stall every run sent here), and one connection's error (a
    // client's RST) is that connection's, logged, not the end of the receiver.
    // Each thread says what arrived itself, at once (the main thread waits in accept); the
    // channel carries only whether stdout still takes lines, for --count and for the exit.
    let (done, finished) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let mut served = 0u32;
    let mut started_threads = 0u32;
    while args.count.map_or(true, |c| served < c) {
        // Results of finished connections first, so that --count is reached as they end.
        while let Ok(r) = finished.try_recv() {
            r.map_err(Error::Output)?;
            served += 1;
        }
        if args.count.is_some_and(|c| started_threads >= c) {
            // Every connection --count allows has started: wait for them to end.
            let r = finished
                .recv()
                .map_err(|e| RunError::Receiver(e.to_string()))?;
            r.map_err(Error::Output)?;
            served += 1;
            continue;
        }
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("zc-trace receive: accept: {e}");
                continue;
            }
        };
        started_threads += 1;
        let (mode, buffer, done) = (args.mode, args.buffer, done.clone());
        std::thread::spawn(move || {
            let said = report_connection(serve_connection(conn, peer, mode, buffer));
            let _ = done.send(said);
        });
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `--move-device`'s device, put back where it came from however `receive` ends: when it
/// returns (dropped), or at SIGINT, SIGTERM or SIGHUP (a thread of its own waits for them;
/// they are blocked in every other thread from before the move on, so none can end the
/// process with the device still away).
struct MovedBack(std::sync::Arc<std::sync::Mutex<Option<crate::transfer::nic::Isolated>>>);

impl MovedBack {
    fn isolate(dev: &str, ip: std::net::Ipv4Addr, prefix: u8) -> Result<MovedBack, String> {
        use nix::sys::signal::{SigSet, Signal};
        let mut signals = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            signals.add(s);
        }
        signals
            .thread_block()
            .map_err(|e| format!("blocking signals: {e}"))?;
        let isolated = match crate::transfer::nic::isolate(dev, ip, prefix) {
            Ok(i) => i,
            Err(e) => {
                let _ = signals.thread_unblock();
                return Err(e);
            }
        };
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Some(isolated)));
        let waiter = shared.clone();
        // Started from this thread, so in the new namespace too, as restore needs.
        std::thread::spawn(move || {
            let sig = signals
                .wait()
                .map_or("a signal".to_string(), |s| s.to_string());
            put_back(&waiter);
            eprintln!("zc-trace receive: interrupted by {sig}");
            std::process::exit(130);
        });
        Ok(MovedBack(shared))
    }

    fn describe(&self) -> String {
        self.0
            .lock()
            .map(|m| m.as_ref().map(|i| i.describe()).unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for MovedBack {
    fn drop(&mut self) {
        put_back(&self.0);
    }
}

/// Restores the moved device once (whoever comes first: the end of `receive` or a signal),
/// and says how it went.
fn put_back(moved: &std::sync::Mutex<Option<crate::transfer::nic::Isolated>>) {
    let Ok(mut guard) = moved.lock() else { return };
    let Some(isolated) = guard.take() else { return };
    match isolated.restore() {
        Ok(()) => eprintln!(
            "zc-trace receive: {} is back in the namespace it came from",
            isolated.dev
        ),
        Err(e) => eprintln!("zc-trace receive: could not put {} back: {e}", isolated.dev),
    }
}

/// One connection of `zc-trace receive`: read to its end, answer the count, and say what
/// arrived (Ok: the line to print), or what went wrong with it (Err).
fn serve_connection(
    conn: std::net::TcpStream,
    peer: SocketAddr,
    mode: ReceiverMode,
    buffer: usize,
) -> Result<String, String> {
    let mut consumer = Consumer::new(mode, buffer).map_err(|e| format!("{peer}: {e}"))?;
    let started = std::time::Instant::now();
    let n = consumer
        .consume(conn.as_fd(), true)
        .map_err(|e| format!("receiving from {peer}: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    // The sender shut its side down for writing: the answer still goes through.
    let _ = (&conn).write_all(report_line(n).as_bytes());
    Ok(format!(
        "received {n} bytes from {peer} in {secs:.3} s ({})",
        crate::ui::units::human_rate(n as f64 / secs.max(1e-9))
    ))
}

/// Prints one connection's outcome (it ended, well or not); an error only when stdout no
/// longer takes lines.
fn report_connection(r: Result<String, String>) -> std::io::Result<()> {
    match r {
        // Flushed line by line (`output`): the lines are watched as they come.
        Ok(line) => crate::ui::output::println(&line),
        Err(e) => {
            eprintln!("zc-trace receive: {e} (the connection is dropped; serving on)");
            Ok(())
        }
    }
}
