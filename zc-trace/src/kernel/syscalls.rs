//! System calls: their names, for the per-syscall breakdown, from the `syscalls` crate's tables
//! (generated from the kernel's own syscall tables, for every architecture it supports; a
//! number it does not know prints as `syscall_<nr>`), and the one table of their families
//! (`FAMILIES`), which the eBPF programs get by number in their config and the report reads.

use zc_trace_common::{SyscallFamily, SYSCALL_SLOTS};

/// The syscalls the programs treat apart, by name, and their family. Names, not numbers:
/// the numbers are the architecture's (the `syscalls` crate's table for the target), and a
/// name the architecture lacks is left out.
const FAMILIES: &[(&str, SyscallFamily)] = {
    use SyscallFamily::*;
    &[
        ("read", Read),
        ("pread64", Read),
        ("readv", Read),
        ("preadv", Read),
        ("preadv2", Read),
        ("write", Write),
        ("pwrite64", Write),
        ("writev", Write),
        ("pwritev", Write),
        ("pwritev2", Write),
        ("sendto", Write),
        ("sendmsg", Write),
        ("recvfrom", Receive),
        ("recvmsg", Receive),
        ("sendfile", Sendfile),
        ("splice", Splice),
        ("copy_file_range", CopyFileRange),
        ("close", Close),
        ("execve", Exec),
        ("execveat", Exec),
        ("rt_sigreturn", RtSigreturn),
    ]
};

/// The family of syscall `name` (other for any the table does not name).
pub fn family(name: &str) -> SyscallFamily {
    FAMILIES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(SyscallFamily::Other, |(_, f)| *f)
}

/// The table as the programs read it: the family of every syscall number of this
/// architecture, by number.
pub fn families_by_number() -> [u8; SYSCALL_SLOTS] {
    let mut table = [SyscallFamily::Other.id(); SYSCALL_SLOTS];
    for (name, fam) in FAMILIES {
        if let Some(slot) = number(name).and_then(|nr| table.get_mut(nr)) {
            *slot = fam.id();
        }
    }
    table
}

/// The number of syscall `name` on the architecture zc-trace was built for.
pub fn number(name: &str) -> Option<usize> {
    name.parse::<syscalls::Sysno>()
        .ok()
        .map(|s| s.id() as usize)
}

/// The name of syscall `nr` on the architecture zc-trace was built for.
pub fn name(nr: usize) -> String {
    syscalls::Sysno::new(nr)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}

/// Whether syscall `name`'s non-negative return value is a count of bytes. Only those have a
/// byte sum in `syscalls_by_name`: mmap, mremap, brk and shmat return addresses, open-like
/// calls descriptors, fork-like calls pids, sendmmsg/recvmmsg and io_uring_enter counts of
/// messages or requests, and most calls 0; added up as bytes they mean nothing (mmap's sum was
/// an address). A list of those that do return bytes, rather than of those that do not, so
/// that a call this list does not know is never summed as bytes.
pub fn returns_bytes(name: &str) -> bool {
    matches!(
        name,
        // Data in or out of a descriptor.
        "read"
            | "write"
            | "pread64"
            | "pwrite64"
            | "readv"
            | "writev"
            | "preadv"
            | "pwritev"
            | "preadv2"
            | "pwritev2"
            | "recvfrom"
            | "sendto"
            | "recvmsg"
            | "sendmsg"
            | "recv"
            | "send"
            // Between descriptors, in the kernel.
            | "sendfile"
            | "sendfile64"
            | "splice"
            | "tee"
            | "vmsplice"
            | "copy_file_range"
            // Into or out of a user buffer, by length.
            | "process_vm_readv"
            | "process_vm_writev"
            | "getrandom"
            | "getdents"
            | "getdents64"
            | "readlink"
            | "readlinkat"
            | "getxattr"
            | "lgetxattr"
            | "fgetxattr"
            | "listxattr"
            | "llistxattr"
            | "flistxattr"
    )
}

#[cfg(test)]
mod byte_returns {
    #[test]
    fn addresses_descriptors_and_counts_are_not_bytes() {
        for name in ["read", "write", "sendfile", "splice", "vmsplice", "sendto"] {
            assert!(super::returns_bytes(name), "{name}");
        }
        for name in [
            "mmap",
            "mremap",
            "brk",
            "shmat",
            "munmap",
            "openat",
            "clone",
            "sendmmsg",
            "io_uring_enter",
        ] {
            assert!(!super::returns_bytes(name), "{name}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_the_architectures() {
        // Against libc's numbers, which are the target's (x86_64, aarch64 alike).
        assert_eq!(number("read"), Some(nix::libc::SYS_read as usize));
        assert_eq!(number("sendfile"), Some(nix::libc::SYS_sendfile as usize));
        assert_eq!(name(nix::libc::SYS_splice as usize), "splice");
        // Any program's syscalls are named in `trace`.
        assert_eq!(name(nix::libc::SYS_execve as usize), "execve");
        assert_eq!(name(nix::libc::SYS_exit_group as usize), "exit_group");
        assert_eq!(
            name(SYSCALL_SLOTS - 1),
            format!("syscall_{}", SYSCALL_SLOTS - 1)
        );
        assert_eq!(number("no_such_call"), None);
    }

    #[test]
    fn every_family_member_has_a_number_in_the_programs_table() {
        let table = families_by_number();
        for (name, fam) in FAMILIES {
            let nr = number(name).unwrap_or_else(|| panic!("{name}: not a syscall here"));
            assert_eq!(table[nr], fam.id(), "{name}");
            assert_eq!(family(name), *fam, "{name}");
        }
        assert_eq!(
            table[nr_of("rt_sigreturn")],
            SyscallFamily::RtSigreturn.id()
        );
        assert_eq!(table[nr_of("openat")], SyscallFamily::Other.id());
        assert_eq!(family("openat"), SyscallFamily::Other);
        // Each family's members are the ones the programs and the report used to list
        // apart (with preadv2 and pwritev2, which they had drifted on).
        let members = |f: SyscallFamily| -> Vec<&str> {
            FAMILIES
                .iter()
                .filter(|(_, g)| *g == f)
                .map(|(n, _)| *n)
                .collect()
        };
        assert_eq!(
            members(SyscallFamily::Read),
            ["read", "pread64", "readv", "preadv", "preadv2"]
        );
        assert_eq!(members(SyscallFamily::Exec), ["execve", "execveat"]);
    }

    fn nr_of(name: &str) -> usize {
        number(name).unwrap()
    }
}
