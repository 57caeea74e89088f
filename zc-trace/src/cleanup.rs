//! Things that must not outlive zc-trace, even when it is interrupted: the receiver process,
//! named temporary files and directories, network namespaces of the veth sink, and a tracefs
//! mount zc-trace made itself. eBPF programs need no entry
//! here: their links are file descriptors, closed by the kernel when the process exits.

use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug)]
enum Item {
    Process(nix::unistd::Pid),
    File(PathBuf),
    Dir(PathBuf),
    Unmount(PathBuf),
    Netns(String),
}

static ITEMS: Mutex<Vec<Item>> = Mutex::new(Vec::new());

/// The registry; a panic elsewhere must not keep cleanup from running.
fn items() -> std::sync::MutexGuard<'static, Vec<Item>> {
    ITEMS.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn register_process(pid: nix::unistd::Pid) {
    items().push(Item::Process(pid));
}

pub fn register_file(path: PathBuf) {
    items().push(Item::File(path));
}

pub fn register_dir(path: PathBuf) {
    items().push(Item::Dir(path));
}

/// A network namespace to delete (`ip netns del`, which also removes its veth end).
pub fn register_netns(name: String) {
    items().push(Item::Netns(name));
}

pub fn forget_dir(path: &std::path::Path) {
    items().retain(|i| !matches!(i, Item::Dir(p) if p == path));
}

pub fn register_unmount(path: PathBuf) {
    items().push(Item::Unmount(path));
}

/// Forget a file that was already removed the normal way.
pub fn forget_file(path: &std::path::Path) {
    items().retain(|i| !matches!(i, Item::File(p) if p == path));
}

/// Undo everything registered, newest first. Safe to call more than once.
pub fn run_all() {
    let items = std::mem::take(&mut *items());
    for item in items.into_iter().rev() {
        match item {
            Item::Process(pid) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            Item::File(path) => {
                let _ = std::fs::remove_file(&path);
            }
            Item::Dir(path) => {
                let _ = std::fs::remove_dir_all(&path);
            }
            Item::Netns(name) => {
                if std::path::Path::new("/run/netns").join(&name).exists() {
                    let _ = std::process::Command::new("ip")
                        .args(["netns", "del", &name])
                        .status();
                }
            }
            Item::Unmount(path) => {
                if let Err(e) = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
                    log::warn!("could not unmount {}: {e}", path.display());
                }
            }
        }
    }
}
