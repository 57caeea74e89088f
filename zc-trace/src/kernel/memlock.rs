//! RLIMIT_MEMLOCK. Kernels before 5.11 charge every BPF map and program to the loading
//! process's locked-memory limit (64 KiB by default), so zc-trace's maps do not fit; from 5.11
//! the memory cgroup pays instead. zc-trace finds out which as libbpf does (a program calling
//! `bpf_ktime_get_coarse_ns`, a helper that came with the memcg accounting in 5.11, loads only
//! where maps are no longer charged), raises its own limit only where they are, and gives the
//! programs `trace` starts the limit it inherited.

use std::sync::OnceLock;

use nix::libc;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// What this kernel does with BPF memory, and what became of zc-trace's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Memlock {
    /// Maps are charged to the memory cgroup (5.11+): the limit does not matter.
    NotCharged,
    /// Maps are charged to RLIMIT_MEMLOCK, and zc-trace's limit is now unlimited.
    Raised { inherited: Limit },
    /// Maps are charged to RLIMIT_MEMLOCK, and the limit could not be raised (`why`).
    Stuck { inherited: Limit, why: String },
    /// The probe program was refused for another reason: whether maps are charged is unknown.
    Unknown { why: String },
}

/// A soft and hard RLIMIT_MEMLOCK (`u64::MAX`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

impl Limit {
    fn current() -> nix::Result<Limit> {
        getrlimit(Resource::RLIMIT_MEMLOCK).map(|(soft, hard)| Limit { soft, hard })
    }

    fn set(self) -> nix::Result<()> {
        setrlimit(Resource::RLIMIT_MEMLOCK, self.soft, self.hard)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let one = |v: u64| match v {
            libc::RLIM_INFINITY => "unlimited".to_string(),
            v => crate::ui::units::human_bytes(v as f64),
        };
        if self.soft == self.hard {
            f.write_str(&one(self.soft))
        } else {
            write!(f, "{} (hard {})", one(self.soft), one(self.hard))
        }
    }
}

/// The limit zc-trace inherited, once it raised its own (none when it did not).
static INHERITED: OnceLock<Limit> = OnceLock::new();

/// Before the first load: raises the limit where the kernel charges maps to it (once; later
/// calls answer the same).
pub fn prepare() -> &'static Memlock {
    static STATE: OnceLock<Memlock> = OnceLock::new();
    STATE.get_or_init(|| match charges_memlock() {
        Ok(false) => Memlock::NotCharged,
        Ok(true) => {
            let inherited = match Limit::current() {
                Ok(limit) => limit,
                Err(e) => {
                    return Memlock::Unknown {
                        why: format!("getrlimit: {}", e.desc()),
                    }
                }
            };
            let unlimited = Limit {
                soft: libc::RLIM_INFINITY,
                hard: libc::RLIM_INFINITY,
            };
            match unlimited.set() {
                Ok(()) => {
                    let _ = INHERITED.set(inherited);
                    Memlock::Raised { inherited }
                }
                Err(e) => Memlock::Stuck {
                    inherited,
                    why: e.desc().to_string(),
                },
            }
        }
        Err(why) => Memlock::Unknown { why },
    })
}

/// The limit to give back to a program zc-trace starts (read before fork).
pub fn inherited() -> Option<Limit> {
    INHERITED.get().copied()
}

/// In a child between fork and exec: the inherited limit back (async-signal-safe).
pub fn restore_in_child(limit: Limit) -> std::io::Result<()> {
    // nix's setrlimit is the bare syscall: nothing allocated or locked.
    limit.set().map_err(std::io::Error::from)
}

/// libbpf's probe (`probe_memcg_account`): whether this kernel charges BPF memory to
/// RLIMIT_MEMLOCK. Needs the privilege to load a socket filter.
pub fn charges_memlock() -> Result<bool, String> {
    // BPF_EMIT_CALL(BPF_FUNC_ktime_get_coarse_ns); BPF_EXIT_INSN().
    const BPF_JMP_CALL: u8 = 0x85;
    const BPF_JMP_EXIT: u8 = 0x95;
    const BPF_FUNC_KTIME_GET_COARSE_NS: i32 = 160;
    #[repr(C)]
    struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }
    let insns = [
        Insn {
            code: BPF_JMP_CALL,
            regs: 0,
            off: 0,
            imm: BPF_FUNC_KTIME_GET_COARSE_NS,
        },
        Insn {
            code: BPF_JMP_EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    // The head of union bpf_attr for BPF_PROG_LOAD, up to prog_flags; the kernel reads the
    // rest as zero.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    let license = c"GPL";
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: attr and what it points to outlive the call; the size is attr's.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as u32,
        )
    };
    if fd >= 0 {
        // SAFETY: the descriptor is ours.
        unsafe { libc::close(fd as i32) };
        return Ok(false);
    }
    match std::io::Error::last_os_error() {
        // An unknown helper is refused as invalid: a kernel before 5.11.
        e if e.raw_os_error() == Some(libc::EINVAL) => Ok(true),
        e => Err(format!("the probe program was refused: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_print_in_words() {
        let l = |soft, hard| Limit { soft, hard }.to_string();
        assert_eq!(l(65536, 65536), "64 KiB");
        assert_eq!(l(8_388_608, libc::RLIM_INFINITY), "8 MiB (hard unlimited)");
        assert_eq!(l(libc::RLIM_INFINITY, libc::RLIM_INFINITY), "unlimited");
        assert_eq!(l(1000, 1000), "1000 B");
    }
}
