//! File sites: the page cache (filemap_read, generic_file_buffered_read before 5.12,
//! filemap_splice_read, generic_perform_write) and
//! the filesystem paths that bypass it (tmpfs, xfs, btrfs).

use super::*;

// ---- filemap_read(struct kiocb *, struct iov_iter *, ssize_t already_read) -> ssize_t ----

#[fexit(function = "filemap_read")]
pub fn zc_file_read_fexit(ctx: FExitContext) -> i32 {
    file_read_exit(ctx)
}

// Its name before 5.12 (same arguments); a loaded fexit program is bound to one function.
#[fexit(function = "generic_file_buffered_read")]
pub fn zc_generic_file_read_fexit(ctx: FExitContext) -> i32 {
    file_read_exit(ctx)
}

#[inline(always)]
fn file_read_exit(ctx: FExitContext) -> i32 {
    let tid = state::current_tid();
    if state::active_task(tid).is_none() {
        return 0;
    }
    let iter: *const u8 = unsafe { ctx.arg(1) };
    let already: i64 = unsafe { ctx.arg(2) };
    let ret: i64 = unsafe { ctx.arg(3) };
    if let Some(c) = file_read_class(iter) {
        record(tid, site::FILE_READ, c, ret - already);
    }
    0
}

#[kprobe]
pub fn zc_file_read_kprobe(ctx: ProbeContext) -> u32 {
    let tid = state::current_tid();
    let (Some(iter), Some(already)) = (ctx.arg::<*const u8>(1), ctx.arg::<i64>(2)) else {
        return 0;
    };
    if let Some(c) = file_read_class(iter) {
        remember(tid, site::FILE_READ, c, already);
    }
    0
}

#[kretprobe]
pub fn zc_file_read_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret().unwrap_or(0);
    complete(state::current_tid(), site::FILE_READ, ret);
    0
}

// ---- filemap_splice_read(in, ppos, pipe, len, flags) -> ssize_t (6.5+): page references ----

by_reference_site!(
    site::FILE_SPLICE_READ,
    fexit = zc_file_splice_read_fexit => "filemap_splice_read",
    kretprobe = zc_file_splice_read_kretprobe,
);

// ---- generic_perform_write(struct kiocb *, struct iov_iter *) -> ssize_t ----

iter_copy_site!(
    site::FILE_WRITE,
    from_iter_class,
    fexit = [zc_file_write_fexit => "generic_perform_write"],
    kprobe = zc_file_write_kprobe,
    kretprobe = zc_file_write_kretprobe,
);

// ---- Filesystem paths that bypass filemap_read / generic_perform_write ----
// shmem_file_read_iter(struct kiocb *, struct iov_iter *to) -> ssize_t (tmpfs reads);
// shmem_file_splice_read(in, ppos, pipe, len, flags) -> ssize_t (6.5+, pages by reference);
// iomap_file_buffered_write(struct kiocb *, struct iov_iter *, ops, ...) -> ssize_t (xfs; its
// trailing arguments changed between versions); btrfs_buffered_write(struct kiocb *,
// struct iov_iter *) -> ssize_t. The return value comes from bpf_get_func_ret, which knows the
// prototype, so no argument slot is assumed for it.

iter_copy_site!(
    site::SHMEM_READ,
    file_read_class,
    fexit = [zc_shmem_read_fexit => "shmem_file_read_iter"],
    kprobe = zc_shmem_read_kprobe,
    kretprobe = zc_shmem_read_kretprobe,
);

by_reference_site!(
    site::SHMEM_SPLICE_READ,
    fexit = zc_shmem_splice_read_fexit => "shmem_file_splice_read",
    kretprobe = zc_shmem_splice_read_kretprobe,
);

iter_copy_site!(
    site::IOMAP_WRITE,
    from_iter_class,
    fexit = [zc_iomap_write_fexit => "iomap_file_buffered_write"],
    kprobe = zc_iomap_write_kprobe,
    kretprobe = zc_iomap_write_kretprobe,
);

iter_copy_site!(
    site::BTRFS_WRITE,
    from_iter_class,
    fexit = [zc_btrfs_write_fexit => "btrfs_buffered_write"],
    kprobe = zc_btrfs_write_kprobe,
    kretprobe = zc_btrfs_write_kretprobe,
);
