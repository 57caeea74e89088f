//! Filesystems as the kernel names them (super_block.s_magic, as statfs reports it), and
//! whether their regular files go through the page-cache copy sites zc-trace hooks: the one
//! table that the payload's description, the trace breakdown, the eBPF side's list of pseudo
//! filesystems, the bench's machine description and the test matrix read. The magic numbers
//! come from libc; the few libc lacks are from include/uapi/linux/magic.h.
//!
//! Pseudo filesystems (procfs, sysfs...) have regular files whose read() and write() copy in
//! their own code (seq_file, kernfs), never through filemap_read or generic_perform_write: in
//! `zc-trace trace` their bytes are kept out of the page-cache counters and ledger (the eBPF
//! side gets their magics in `Config::pseudo_fs_magics`), and shown in the breakdown by
//! descriptor kind with their own name.

extern crate alloc;

use alloc::{format, string::String};

use crate::PSEUDO_FS_SLOTS;

/// How a filesystem's regular files are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Through the page cache (filemap_read / shmem / iomap / btrfs sites).
    PageCache,
    /// In the filesystem's own code: no hooked copy site sees it.
    Pseudo,
}

/// One filesystem (or family: ext2/3/4 share their magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filesystem {
    pub magic: u32,
    /// The kernel's name (/proc/filesystems), or the family's.
    pub name: &'static str,
    pub path: Path,
}

const fn fs(magic: u32, name: &'static str, path: Path) -> Filesystem {
    Filesystem { magic, name, path }
}

/// ext2, ext3 and ext4 share one magic.
pub const EXT: u32 = libc::EXT4_SUPER_MAGIC as u32;
pub const TMPFS: u32 = libc::TMPFS_MAGIC as u32;
pub const XFS: u32 = libc::XFS_SUPER_MAGIC as u32;
pub const BTRFS: u32 = libc::BTRFS_SUPER_MAGIC as u32;

use Path::{PageCache, Pseudo};

pub const TABLE: &[Filesystem] = &[
    fs(EXT, "ext2/3/4", PageCache),
    fs(TMPFS, "tmpfs", PageCache),
    fs(XFS, "xfs", PageCache),
    fs(BTRFS, "btrfs", PageCache),
    fs(libc::F2FS_SUPER_MAGIC as u32, "f2fs", PageCache),
    fs(libc::MSDOS_SUPER_MAGIC as u32, "vfat", PageCache),
    fs(libc::NFS_SUPER_MAGIC as u32, "nfs", PageCache),
    fs(libc::FUSE_SUPER_MAGIC as u32, "fuse", PageCache),
    fs(libc::OVERLAYFS_SUPER_MAGIC as u32, "overlay", PageCache),
    fs(libc::ISOFS_SUPER_MAGIC as u32, "iso9660", PageCache),
    // RAMFS_MAGIC: not in libc.
    fs(0x858458f6, "ramfs", PageCache),
    // SQUASHFS_MAGIC: not in libc.
    fs(0x73717368, "squashfs", PageCache),
    fs(libc::PROC_SUPER_MAGIC as u32, "proc", Pseudo),
    fs(libc::SYSFS_MAGIC as u32, "sysfs", Pseudo),
    fs(libc::DEBUGFS_MAGIC as u32, "debugfs", Pseudo),
    fs(libc::TRACEFS_MAGIC as u32, "tracefs", Pseudo),
    fs(libc::CGROUP_SUPER_MAGIC as u32, "cgroup", Pseudo),
    fs(libc::CGROUP2_SUPER_MAGIC as u32, "cgroup2", Pseudo),
    fs(libc::SECURITYFS_MAGIC as u32, "securityfs", Pseudo),
    fs(libc::BPF_FS_MAGIC as u32, "bpf", Pseudo),
    // CONFIGFS_MAGIC: not in libc.
    fs(0x62656570, "configfs", Pseudo),
    // PSTOREFS_MAGIC: not in libc.
    fs(0x6165676c, "pstore", Pseudo),
    // EFIVARFS_MAGIC: not in libc.
    fs(0xde5e81e4, "efivarfs", Pseudo),
    fs(libc::SELINUX_MAGIC as u32, "selinuxfs", Pseudo),
    fs(libc::HUGETLBFS_MAGIC as u32, "hugetlbfs", Pseudo),
    fs(libc::NSFS_MAGIC as u32, "nsfs", Pseudo),
    fs(libc::BINDERFS_SUPER_MAGIC as u32, "binderfs", Pseudo),
];

/// The filesystem with this magic, if zc-trace knows it. statfs's f_type is wider than the
/// kernel's 32-bit s_magic on 64-bit hosts (and signed on some): its low 32 bits are it.
pub fn by_magic(magic: u64) -> Option<&'static Filesystem> {
    TABLE.iter().find(|f| f.magic == magic as u32)
}

/// The filesystem's name, or its magic in hex when zc-trace does not know it.
pub fn name(magic: u64) -> String {
    by_magic(magic).map_or_else(|| format!("fs 0x{:x}", magic as u32), |f| f.name.into())
}

/// The pseudo filesystems' magics, for the eBPF side's `Config::pseudo_fs_magics`.
pub fn pseudo_magics() -> [u32; PSEUDO_FS_SLOTS] {
    let mut out = [0; PSEUDO_FS_SLOTS];
    let pseudo = TABLE.iter().filter(|f| f.path == Pseudo);
    for (slot, f) in out.iter_mut().zip(pseudo) {
        *slot = f.magic;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pseudo_filesystem_fits_the_config() {
        let n = TABLE.iter().filter(|f| f.path == Pseudo).count();
        assert!(n <= PSEUDO_FS_SLOTS, "{n} pseudo filesystems");
        let magics = pseudo_magics();
        assert!(magics.contains(&0x9fa0), "proc");
        assert!(!magics.contains(&0xef53), "ext4 is not pseudo");
    }

    #[test]
    fn names() {
        assert_eq!(name(0xef53), "ext2/3/4");
        assert_eq!(
            name(0x794c_7630),
            "overlay",
            "the kernel's name, as mountinfo has it"
        );
        assert_eq!(name(0x1234), "fs 0x1234");
    }

    #[test]
    fn every_magic_is_named_once() {
        for (i, f) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..]
                    .iter()
                    .all(|g| g.magic != f.magic && g.name != f.name),
                "{} twice",
                f.name
            );
        }
    }
}
