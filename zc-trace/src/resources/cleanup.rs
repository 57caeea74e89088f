//! Things that must not outlive zc-trace, even when it is interrupted: the receiver process,
//! private directories, a tracefs mount zc-trace made itself, and the undo actions the layers
//! above register (the veth sink's network namespaces, scatter-gather turned off on a device).
//! eBPF programs need no entry here: their links are file descriptors, closed by the kernel
//! when the process exits.

use std::sync::Mutex;

/// What the layer that made something registered to undo it (a private directory to remove,
/// a tracefs to unmount, a network namespace to delete, scatter-gather to turn on again),
/// under a key that `forget` takes it off by: the registry runs it and knows nothing of what
/// it undoes, so it imports none of the modules that make things.
struct Item {
    key: String,
    action: Box<dyn FnOnce() + Send>,
}

/// What is registered, and whether cleanup has begun (then nothing new may be made).
pub struct Registry {
    items: Vec<Item>,
    closing: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    items: Vec::new(),
    closing: false,
});

/// The registry; a panic elsewhere must not keep cleanup from running.
fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Cleanup has begun (a signal arrived): the process is about to exit.
#[derive(Debug)]
pub struct Closing;

impl Registry {
    /// `action` undoes what is about to be made; `key` names it for `forget`.
    pub fn undo(&mut self, key: String, action: impl FnOnce() + Send + 'static) {
        self.items.push(Item {
            key,
            action: Box::new(action),
        });
    }
}

/// What `key` names was undone the normal way: its action is dropped unrun.
pub fn forget(key: &str) {
    registry().items.retain(|i| i.key != key);
}

/// Runs cleanup from a panic: it must not wait for a lock the panicking thread may hold.
pub fn run_all_after_panic() {
    if let Ok(mut registry) = REGISTRY.try_lock() {
        registry.closing = true;
        let items = std::mem::take(&mut registry.items);
        drop(registry);
        undo(items);
    }
}

/// Runs `make` unless cleanup has begun, and holds cleanup off until `make` returns. For a
/// step that makes something that outlives the process (a network namespace): cleanup then
/// runs either before it (and it is refused) or after it (and undoes it), never in between,
/// where it used to delete the namespace before it was made (by a child `ip`, then) and exit,
/// leaving it behind. `make` registers what it makes through the registry it is given.
pub fn unless_closing<T>(make: impl FnOnce(&mut Registry) -> T) -> Result<T, Closing> {
    let mut registry = registry();
    if registry.closing {
        return Err(Closing);
    }
    Ok(make(&mut registry))
}

/// Registers `action` to undo what was just made (see `Registry::undo`); for what cannot be
/// made after cleanup began (a step that can, uses `unless_closing`).
pub fn register(key: String, action: impl FnOnce() + Send + 'static) {
    registry().undo(key, action);
}

/// The receiver process: killed and reaped.
pub fn register_process(pid: nix::unistd::Pid) {
    register(format!("process {pid}"), move || {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    });
}

/// Undo everything registered, newest first. Safe to call more than once. It waits for a
/// step in `unless_closing` to finish and refuses later ones: cleanup comes at the end.
pub fn run_all() {
    let mut registry = registry();
    registry.closing = true;
    let items = std::mem::take(&mut registry.items);
    undo(items);
}

fn undo(items: Vec<Item>) {
    for item in items.into_iter().rev() {
        (item.action)();
    }
}
