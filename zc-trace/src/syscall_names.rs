//! Syscall numbers to names, for the per-syscall breakdown, from the `syscalls` crate's tables
//! (generated from the kernel's own syscall tables, for every architecture it supports). A
//! number it does not know prints as `syscall_<nr>`.

/// The name of syscall `nr` on the architecture zc-trace was built for.
pub fn name(nr: usize) -> String {
    syscalls::Sysno::new(nr)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("syscall_{nr}"))
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
