//! Starting the traced command: its program found on PATH here (so that one execve starts
//! it, and "not found" is an error before anything is attached), run as the user who called
//! sudo unless --as-root.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, InputError};

/// Who the command runs as.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    uid: u32,
    gid: u32,
    groups: Vec<nix::libc::gid_t>,
    /// From the user's passwd entry, for HOME and SHELL.
    home: Option<PathBuf>,
    shell: Option<PathBuf>,
}

/// The user who called sudo (SUDO_UID, SUDO_GID, SUDO_USER and that user's groups), or None:
/// root itself, with --as-root or without sudo.
pub fn run_as(as_root: bool) -> Result<Option<RunAs>, InputError> {
    if as_root {
        return Ok(None);
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(uid), Some(gid)) = (var("SUDO_UID"), var("SUDO_GID")) else {
        return Ok(None);
    };
    let bad = |what: &str| InputError::Usage(format!("{what} is not a number: set by sudo?"));
    let uid: u32 = uid.parse().map_err(|_| bad("SUDO_UID"))?;
    let gid: u32 = gid.parse().map_err(|_| bad("SUDO_GID"))?;
    if uid == 0 {
        return Ok(None);
    }
    let name = var("SUDO_USER").unwrap_or_else(|| uid.to_string());
    let groups = CString::new(name.clone())
        .ok()
        .and_then(|n| nix::unistd::getgrouplist(&n, nix::unistd::Gid::from_raw(gid)).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![gid]);
    let entry = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    Ok(Some(RunAs {
        name,
        uid,
        gid,
        groups,
        home: entry.as_ref().map(|u| u.dir.clone()),
        shell: entry.map(|u| u.shell),
    }))
}

/// The program's path: as given when it has a slash, else the first executable on PATH.
/// 127 when there is none, 126 when it exists but cannot be executed.
pub fn resolve(program: &OsStr) -> Result<PathBuf, Error> {
    let shown = program.to_string_lossy();
    let not_found = |why: String| Error::Command {
        message: format!("cannot start `{shown}`: {why}"),
        code: 127,
    };
    if program.is_empty() {
        return Err(Error::Input(InputError::Usage(
            "the command after `--` is empty".into(),
        )));
    }
    let candidates: Vec<PathBuf> = if program.as_bytes().contains(&b'/') {
        vec![PathBuf::from(program)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .collect()
    };
    // A directory given by path exists but cannot be executed: 126, as a shell says.
    if let [only] = &candidates[..] {
        if program.as_bytes().contains(&b'/') && only.is_dir() {
            return Err(Error::Command {
                message: format!("cannot start `{shown}`: it is a directory"),
                code: 126,
            });
        }
    }
    let found: Vec<&PathBuf> = candidates.iter().filter(|p| p.is_file()).collect();
    match found.iter().find(|p| executable(p)) {
        Some(p) => Ok(p.to_path_buf()),
        None if !found.is_empty() => Err(Error::Command {
            message: format!(
                "cannot start `{shown}`: {} is not executable",
                found[0].display()
            ),
            code: 126,
        }),
        None if candidates.len() == 1 && program.as_bytes().contains(&b'/') => {
            Err(not_found("no such file".into()))
        }
        None => Err(not_found("not found on PATH".into())),
    }
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// The signals ignored and blocked when zc-trace started (bit N-1 for signal N), before any
/// library it uses ignored or blocked one of its own.
static INHERITED_SIGNALS: OnceLock<(u64, u64)> = OnceLock::new();

/// Reads them from /proc/self/status; called first thing in `main`.
pub fn record_inherited_signals() {
    INHERITED_SIGNALS.get_or_init(|| {
        // Unreadable (no /proc), the command gets every signal's default.
        let (ignored, blocked) = procfs::process::Process::myself()
            .and_then(|p| p.status())
            .map_or((0, 0), |s| (s.sigign, s.sigblk));
        // Rust's runtime ignores SIGPIPE before main, so whether the caller did is lost; the
        // command gets the default, as std's Command gives it too (and a shell would).
        let sigpipe = 1u64 << (nix::libc::SIGPIPE - 1);
        (ignored & !sigpipe, blocked)
    });
}

/// The kernel's struct sigaction, as rt_sigaction takes it on x86_64 and arm64 (handler,
/// flags, restorer, mask). The raw call, not libc's: glibc and musl refuse the signals they
/// reserve (32, 33), and those are the ones a process started by zc-trace found ignored.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// In the child before exec: every signal's disposition and the mask back to what zc-trace
/// inherited (exec keeps ignored signals and the mask; it resets only handlers). Only
/// async-signal-safe syscalls.
fn restore_inherited_signals(ignored: u64, blocked: u64) {
    use nix::libc;
    for sig in 1..=64i64 {
        if sig == libc::SIGKILL as i64 || sig == libc::SIGSTOP as i64 {
            continue;
        }
        let act = KernelSigaction {
            handler: if ignored & (1 << (sig - 1)) != 0 {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            },
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: a valid struct of the kernel's layout, no old action asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    // SAFETY: a valid 8-byte signal set, no old set asked for.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &blocked as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

/// A std Command for `path` with `argv` (argv[0] as given), as `user`, with the signal
/// dispositions, mask and locked-memory limit it would have had without zc-trace.
pub fn command(path: &Path, argv: &[OsString], user: Option<&RunAs>) -> std::process::Command {
    let mut c = std::process::Command::new(path);
    c.arg0(&argv[0]).args(&argv[1..]);
    if let Some(u) = user {
        // The environment sudo gives the user's own commands, not root's: the user's HOME,
        // USER, LOGNAME and SHELL, and none of the loader's variables that would make the
        // user's program load code root chose (sudo drops them too).
        c.env("USER", &u.name).env("LOGNAME", &u.name);
        if let Some(home) = &u.home {
            c.env("HOME", home);
        }
        if let Some(shell) = &u.shell {
            c.env("SHELL", shell);
        }
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"LD_") {
                c.env_remove(&key);
            }
        }
    }
    let user = user.cloned();
    let (ignored, blocked) = *INHERITED_SIGNALS.get_or_init(|| (0, 0));
    // zc-trace raised its locked-memory limit for its maps (kernels before 5.11): the command
    // gets the one zc-trace inherited.
    let memlock = crate::kernel::memlock::inherited();
    // SAFETY: only async-signal-safe syscalls between fork and exec; groups first, then the
    // gid, then the uid (after which the others could not be changed any more); the signals
    // last, so that nothing before runs with zc-trace's own handlers gone.
    unsafe {
        c.pre_exec(move || {
            use nix::libc;
            if let Some(u) = &user {
                if libc::setgroups(u.groups.len(), u.groups.as_ptr()) != 0
                    || libc::setgid(u.gid) != 0
                    || libc::setuid(u.uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(limit) = memlock {
                crate::kernel::memlock::restore_in_child(limit)?;
            }
            restore_inherited_signals(ignored, blocked);
            Ok(())
        });
    }
    c
}
