//! Syscall numbers to names, for the per-syscall breakdown, from the `syscalls` crate's tables
//! (generated from the kernel's own syscall tables, for every architecture it supports). A
//! number it does not know prints as `syscall_<nr>`.

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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    #[test]
    fn known_and_unknown_numbers() {
        assert_eq!(super::name(0), "read");
        assert_eq!(super::name(40), "sendfile");
        assert_eq!(super::name(275), "splice");
        // Not in the table before: any program's syscalls are named in `trace`.
        assert_eq!(super::name(59), "execve");
        assert_eq!(super::name(231), "exit_group");
        assert_eq!(super::name(511), "syscall_511");
    }
}
