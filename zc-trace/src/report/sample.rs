//! What one run of one strategy produced, kept until the report is built.
//!
//! A run's counter deltas are a `RoleStats` per role: 20 KiB each, nearly all of it the
//! per-syscall table, and nearly all of that zero. Keeping them whole made memory grow
//! ~40 KiB per strategy per iteration (`--iterations 1000` peaked near 400 MB). A sample keeps
//! only the non-zero words, a few dozen per role: the medians still see every exact value.

use zc_trace_common::{RoleStats, SyscallStat};

/// One role's non-zero counter deltas, by word index of [`RoleStats::words`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSample {
    /// Ascending word indices (RoleStats has ~10,000 words: u16 holds them).
    index: Vec<u16>,
    value: Vec<u64>,
}

const _: () = assert!(RoleStats::WORDS <= u16::MAX as usize);

impl RoleSample {
    /// `after - before`, word by word (a counter never goes down; saturating all the same).
    pub fn delta(after: &RoleStats, before: &RoleStats) -> Self {
        let mut s = RoleSample::default();
        for (i, (a, b)) in after.words().iter().zip(before.words()).enumerate() {
            let d = a.saturating_sub(*b);
            if d != 0 {
                s.index.push(i as u16);
                s.value.push(d);
            }
        }
        s.index.shrink_to_fit();
        s.value.shrink_to_fit();
        s
    }

    fn word(&self, i: usize) -> u64 {
        self.index
            .binary_search(&(i as u16))
            .map_or(0, |at| self.value[at])
    }

    pub fn counter(&self, i: usize) -> u64 {
        self.word(RoleStats::counter_word(i))
    }

    /// Bytes at a copy site in one class.
    pub fn copied(&self, site: usize, class: usize) -> u64 {
        self.word(RoleStats::copy_word(site, class))
    }

    pub fn syscall(&self, nr: usize) -> SyscallStat {
        let first = RoleStats::syscall_word(nr);
        SyscallStat::from_words(std::array::from_fn(|k| self.word(first + k)))
    }

    /// The syscall numbers with any non-zero figure, ascending.
    pub fn syscall_numbers(&self) -> impl Iterator<Item = usize> + '_ {
        let first = RoleStats::syscall_word(0);
        let mut last = None;
        self.index
            .iter()
            .map(|&i| i as usize)
            .filter(move |&i| i >= first)
            .map(move |i| (i - first) / SyscallStat::WORDS)
            .filter(move |&nr| {
                let new = last != Some(nr);
                last = Some(nr);
                new
            })
    }
}

impl From<&RoleStats> for RoleSample {
    fn from(stats: &RoleStats) -> Self {
        RoleSample::delta(stats, &RoleStats::zeroed())
    }
}

/// What one run of one strategy produced: in-kernel counter deltas for both roles.
pub struct Sample {
    pub sender: RoleSample,
    pub receiver: RoleSample,
    /// Between the start and stop markers, by bpf_ktime_get_ns().
    pub window_ns: u64,
    pub bytes: u64,
    /// What the kernel reported about zero-copy sends, for the strategies that make them.
    pub zerocopy: Option<crate::transfer::strategies::ZerocopyReport>,
    /// TCP sinks: the payload bytes the kernel retransmitted (tcp_info.tcpi_bytes_retrans),
    /// which pass the device's transmit, and its copy without scatter-gather, once more.
    pub retransmitted: Option<u64>,
    /// TCP sinks: the connection's send time and how much of it the receiver's window held
    /// the sender back (tcp_info).
    pub send_time: Option<crate::transfer::sink::SendTime>,
    /// The bytes the sink says arrived, where it can tell (a receiver process, a file's size,
    /// `zc-trace receive`'s answer); None when no one said (a remote server that does not
    /// answer with its count).
    pub received: Option<u64>,
}

impl Sample {
    /// What the tasks of `role` did.
    pub fn of(&self, role: zc_trace_common::Role) -> &RoleSample {
        match role {
            zc_trace_common::Role::Sender => &self.sender,
            zc_trace_common::Role::Receiver => &self.receiver,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zc_trace_common::{class, counter, site};

    #[test]
    fn a_sample_reads_back_every_field_it_was_made_from() {
        let mut after = Box::new(RoleStats::zeroed());
        let before = Box::new(RoleStats::zeroed());
        after.counters[counter::SYSCALL_ENTERS] = 7;
        after.copies[site::SOCK_RECV][class::KERNEL_TO_USER] = 1000;
        after.site_calls[site::SOCK_RECV] = 3;
        after.syscalls[0] = SyscallStat {
            enters: 2,
            exits: 2,
            ret_positive_sum: 1000,
            errors: 0,
            zero_returns: 1,
        };
        after.syscalls[511].errors = 4;
        let s = RoleSample::delta(&after, &before);
        assert_eq!(s.counter(counter::SYSCALL_ENTERS), 7);
        assert_eq!(s.counter(counter::SYSCALL_EXITS), 0);
        assert_eq!(s.copied(site::SOCK_RECV, class::KERNEL_TO_USER), 1000);
        assert_eq!(s.copied(site::SOCK_RECV, class::BY_REFERENCE), 0);
        assert_eq!(s.word(RoleStats::site_calls_word(site::SOCK_RECV)), 3);
        assert_eq!(s.syscall(0), after.syscalls[0]);
        assert_eq!(s.syscall(511).errors, 4);
        assert_eq!(s.syscall(1), SyscallStat::default());
        assert_eq!(s.syscall_numbers().collect::<Vec<_>>(), vec![0, 511]);
        // Only the non-zero words are kept.
        assert_eq!(s.index.len(), 8);
    }

    #[test]
    fn a_delta_subtracts_word_by_word() {
        let mut before = Box::new(RoleStats::zeroed());
        let mut after = Box::new(RoleStats::zeroed());
        before.syscalls[3].enters = 5;
        after.syscalls[3].enters = 8;
        before.counters[2] = 9;
        after.counters[2] = 9;
        let s = RoleSample::delta(&after, &before);
        assert_eq!(s.syscall(3).enters, 3);
        assert_eq!(s.counter(2), 0);
        assert_eq!(s.syscall_numbers().collect::<Vec<_>>(), vec![3]);
    }
}
