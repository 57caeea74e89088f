//! Things that must not outlive zc-trace, even when it is interrupted: the receiver process,
//! named temporary files, and a tracefs mount zc-trace made itself. eBPF programs need no entry
//! here: their links are file descriptors, closed by the kernel when the process exits.

use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug)]
enum Item {
    Process(nix::unistd::Pid),
    File(PathBuf),
    Unmount(PathBuf),
}

static ITEMS: Mutex<Vec<Item>> = Mutex::new(Vec::new());

pub fn register_process(pid: nix::unistd::Pid) {
    ITEMS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Item::Process(pid));
}

pub fn register_file(path: PathBuf) {
    ITEMS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Item::File(path));
}

pub fn register_unmount(path: PathBuf) {
    ITEMS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Item::Unmount(path));
}

/// Forget a file that was already removed the normal way.
pub fn forget_file(path: &std::path::Path) {
    ITEMS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|i| !matches!(i, Item::File(p) if p == path));
}

/// Undo everything registered, newest first. Safe to call more than once.
pub fn run_all() {
    let items = std::mem::take(&mut *ITEMS.lock().unwrap_or_else(|e| e.into_inner()));
    for item in items.into_iter().rev() {
        match item {
            Item::Process(pid) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            Item::File(path) => {
                let _ = std::fs::remove_file(&path);
            }
            Item::Unmount(path) => {
                if let Err(e) = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
                    log::warn!("could not unmount {}: {e}", path.display());
                }
            }
        }
    }
}
