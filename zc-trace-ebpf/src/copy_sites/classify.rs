//! What an iov_iter's type says about the memory behind it, and so the class of a copy
//! through it, per direction.

use zc_trace_common::{class, Config, UNKNOWN};

use crate::kread;
use crate::state;

/// What an iov_iter's type says about the memory behind it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Memory {
    User,
    Kernel,
    /// 6.1's ITER_PIPE: the "copy" installs page references into a pipe.
    PipePages,
    /// ITER_DISCARD: nothing is copied.
    Discard,
}

#[inline(always)]
pub(super) fn memory(cfg: &Config, iter: *const u8) -> Option<Memory> {
    if iter.is_null() || cfg.iter.type_off == UNKNOWN {
        return None;
    }
    // Before 5.14 the direction shares the byte with the type: masked off.
    let t = kread::at::<u8>(iter, cfg.iter.type_off)? as u32 & cfg.iter.type_mask;
    Some(if t == cfg.iter.ubuf || t == cfg.iter.iovec {
        Memory::User
    } else if t == cfg.iter.pipe {
        Memory::PipePages
    } else if t == cfg.iter.discard {
        Memory::Discard
    } else {
        Memory::Kernel
    })
}

#[inline(always)]
pub(super) fn file_read_class(iter: *const u8) -> Option<usize> {
    match memory(state::config(), iter)? {
        Memory::User => Some(class::KERNEL_TO_USER),
        Memory::Kernel => Some(class::KERNEL_TO_KERNEL),
        Memory::PipePages => Some(class::BY_REFERENCE),
        Memory::Discard => None,
    }
}

#[inline(always)]
pub(super) fn recv_class(iter: *const u8) -> Option<usize> {
    match memory(state::config(), iter)? {
        Memory::User => Some(class::KERNEL_TO_USER),
        Memory::Discard | Memory::PipePages => None,
        Memory::Kernel => Some(class::KERNEL_TO_KERNEL),
    }
}

#[inline(always)]
pub(super) fn from_iter_class(iter: *const u8) -> Option<usize> {
    match memory(state::config(), iter)? {
        Memory::User => Some(class::USER_TO_KERNEL),
        Memory::Kernel => Some(class::KERNEL_TO_KERNEL),
        Memory::PipePages | Memory::Discard => None,
    }
}
