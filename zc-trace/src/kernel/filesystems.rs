//! Filesystems as the kernel names them (super_block.s_magic), and whether their regular files
//! go through the page-cache copy sites zc-trace hooks. The magic numbers come from libc; only
//! the names and the one fact zc-trace needs about each are here (and the few magics libc
//! lacks, from include/uapi/linux/magic.h).
//!
//! Pseudo filesystems (procfs, sysfs...) have regular files whose read() and write() copy in
//! their own code (seq_file, kernfs), never through filemap_read or generic_perform_write: in
//! `zc-trace trace` their bytes are kept out of the page-cache counters and ledger (the eBPF
//! side gets their magics in `Config::pseudo_fs_magics`), and shown in the breakdown by
//! descriptor kind with their own name.

use nix::libc;
use zc_trace_common::PSEUDO_FS_SLOTS;

/// How a filesystem's regular files are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Through the page cache (filemap_read / shmem / iomap / btrfs sites).
    PageCache,
    /// In the filesystem's own code: no hooked copy site sees it.
    Pseudo,
}

/// (s_magic, name, path). One magic may name a family (ext2/3/4 share theirs).
const TABLE: &[(u32, &str, Path)] = &[
    (libc::EXT4_SUPER_MAGIC as u32, "ext2/3/4", Path::PageCache),
    (libc::TMPFS_MAGIC as u32, "tmpfs", Path::PageCache),
    (libc::XFS_SUPER_MAGIC as u32, "xfs", Path::PageCache),
    (libc::BTRFS_SUPER_MAGIC as u32, "btrfs", Path::PageCache),
    (libc::F2FS_SUPER_MAGIC as u32, "f2fs", Path::PageCache),
    (libc::MSDOS_SUPER_MAGIC as u32, "vfat", Path::PageCache),
    (libc::NFS_SUPER_MAGIC as u32, "nfs", Path::PageCache),
    (libc::FUSE_SUPER_MAGIC as u32, "fuse", Path::PageCache),
    (
        libc::OVERLAYFS_SUPER_MAGIC as u32,
        "overlay",
        Path::PageCache,
    ),
    (libc::ISOFS_SUPER_MAGIC as u32, "iso9660", Path::PageCache),
    (
        0x858458f6, /* RAMFS_MAGIC, not in libc */
        "ramfs",
        Path::PageCache,
    ),
    (
        0x73717368, /* SQUASHFS_MAGIC, not in libc */
        "squashfs",
        Path::PageCache,
    ),
    (libc::PROC_SUPER_MAGIC as u32, "proc", Path::Pseudo),
    (libc::SYSFS_MAGIC as u32, "sysfs", Path::Pseudo),
    (libc::DEBUGFS_MAGIC as u32, "debugfs", Path::Pseudo),
    (libc::TRACEFS_MAGIC as u32, "tracefs", Path::Pseudo),
    (libc::CGROUP_SUPER_MAGIC as u32, "cgroup", Path::Pseudo),
    (libc::CGROUP2_SUPER_MAGIC as u32, "cgroup2", Path::Pseudo),
    (libc::SECURITYFS_MAGIC as u32, "securityfs", Path::Pseudo),
    (libc::BPF_FS_MAGIC as u32, "bpf", Path::Pseudo),
    (
        0x62656570, /* CONFIGFS_MAGIC, not in libc */
        "configfs",
        Path::Pseudo,
    ),
    (
        0x6165676c, /* PSTOREFS_MAGIC, not in libc */
        "pstore",
        Path::Pseudo,
    ),
    (
        0xde5e81e4, /* EFIVARFS_MAGIC, not in libc */
        "efivarfs",
        Path::Pseudo,
    ),
    (libc::SELINUX_MAGIC as u32, "selinuxfs", Path::Pseudo),
    (libc::HUGETLBFS_MAGIC as u32, "hugetlbfs", Path::Pseudo),
    (libc::NSFS_MAGIC as u32, "nsfs", Path::Pseudo),
    (libc::BINDERFS_SUPER_MAGIC as u32, "binderfs", Path::Pseudo),
];

/// The filesystem's name, or its magic in hex when zc-trace does not know it.
pub fn name(magic: u32) -> String {
    TABLE
        .iter()
        .find(|(m, ..)| *m == magic)
        .map_or_else(|| format!("fs 0x{magic:x}"), |(_, n, _)| (*n).to_string())
}

/// The pseudo filesystems' magics, for the eBPF side's `Config::pseudo_fs_magics`.
pub fn pseudo_magics() -> [u32; PSEUDO_FS_SLOTS] {
    let mut out = [0; PSEUDO_FS_SLOTS];
    let pseudo = TABLE.iter().filter(|(.., p)| *p == Path::Pseudo);
    for (slot, (m, ..)) in out.iter_mut().zip(pseudo) {
        *slot = *m;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pseudo_filesystem_fits_the_config() {
        let n = TABLE.iter().filter(|(.., p)| *p == Path::Pseudo).count();
        assert!(n <= PSEUDO_FS_SLOTS, "{n} pseudo filesystems");
        let magics = pseudo_magics();
        assert!(magics.contains(&0x9fa0), "proc");
        assert!(!magics.contains(&0xef53), "ext4 is not pseudo");
    }

    #[test]
    fn names() {
        assert_eq!(name(0xef53), "ext2/3/4");
        assert_eq!(name(0x1234), "fs 0x1234");
    }
}
