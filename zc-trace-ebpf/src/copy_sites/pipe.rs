//! Pipe sites: pipe_write and pipe_read (anon_pipe_* from 6.15), copies between the iov_iter
//! and the pipe's pages; the iter says whose memory it is.

use super::*;

// ---- pipe_write / anon_pipe_write (6.15+) (struct kiocb *, struct iov_iter *from) -> ssize_t ----
// ---- pipe_read / anon_pipe_read (struct kiocb *, struct iov_iter *to) -> ssize_t ----
// A loaded fexit program is bound to one function, hence one program per name.

iter_copy_site!(
    site::PIPE_WRITE,
    from_iter_class,
    fexit = [
        zc_pipe_write_fexit => "pipe_write",
        zc_anon_pipe_write_fexit => "anon_pipe_write",
    ],
    kprobe = zc_pipe_write_kprobe,
    kretprobe = zc_pipe_write_kretprobe,
);

iter_copy_site!(
    site::PIPE_READ,
    recv_class,
    fexit = [
        zc_pipe_read_fexit => "pipe_read",
        zc_anon_pipe_read_fexit => "anon_pipe_read",
    ],
    kprobe = zc_pipe_read_kprobe,
    kretprobe = zc_pipe_read_kretprobe,
);
