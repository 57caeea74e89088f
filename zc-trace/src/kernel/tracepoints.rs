//! The classic tracepoints' fields that the programs read, by event: the one list that says
//! which fields an event must have before its program may attach (a kernel that renamed one
//! fails that candidate with the field's name) and where each field's offset goes in the
//! eBPF config. The offsets differ between kernels, so they are read from tracefs
//! (`events/<group>/<event>/format`), never hard-coded.

use zc_trace_common::Config;

/// A field the programs read, and the Config slot its offset goes to.
pub struct Field {
    pub name: &'static str,
    pub set: fn(&mut Config, u32),
}

/// A classic tracepoint ("group:event") of the plan and the fields its programs read.
pub struct Event {
    pub target: &'static str,
    pub fields: &'static [Field],
}

macro_rules! fields {
    ($($name:literal => $slot:ident),* $(,)?) => {
        &[$(Field { name: $name, set: |c: &mut Config, off: u32| c.tp.$slot = off }),*]
    };
}

pub const EVENTS: &[Event] = &[
    Event {
        target: "raw_syscalls:sys_enter",
        fields: fields!["id" => sys_enter_id_off, "args" => sys_enter_args_off],
    },
    Event {
        target: "raw_syscalls:sys_exit",
        fields: fields!["id" => sys_exit_id_off, "ret" => sys_exit_ret_off],
    },
    Event {
        target: "sched:sched_switch",
        fields: fields!["prev_pid" => sched_prev_pid_off, "prev_state" => sched_prev_state_off],
    },
    // Counted by its run alone: the program reads no field.
    Event {
        target: "exceptions:page_fault_user",
        fields: &[],
    },
    Event {
        target: "exceptions:page_fault_kernel",
        fields: fields!["address" => fault_address_off],
    },
    Event {
        target: "skb:skb_copy_datagram_iovec",
        fields: fields!["len" => skb_copy_len_off],
    },
    Event {
        target: "sock:sock_send_length",
        fields: fields!["ret" => sock_send_ret_off],
    },
    Event {
        target: "block:block_bio_queue",
        fields: fields!["nr_sector" => bio_nr_sector_off, "rwbs" => bio_rwbs_off],
    },
    Event {
        target: "task:task_newtask",
        fields: fields!["pid" => newtask_pid_off],
    },
    // Runs in the exiting task; the program reads no field.
    Event {
        target: "sched:sched_process_exit",
        fields: &[],
    },
    Event {
        target: "sched:sched_process_exec",
        fields: fields!["pid" => exec_pid_off, "old_pid" => exec_old_pid_off],
    },
    // One event under two names (renamed in 6.x); a kernel has one of them.
    Event {
        target: "io_uring:io_uring_submit_req",
        fields: fields!["opcode" => uring_opcode_off],
    },
    Event {
        target: "io_uring:io_uring_submit_sqe",
        fields: fields!["opcode" => uring_opcode_off],
    },
    Event {
        target: "net:net_dev_start_xmit",
        fields: fields![
            "skbaddr" => xmit_skbaddr_off,
            "len" => xmit_len_off,
            "data_len" => xmit_data_len_off,
            "transport_offset_valid" => xmit_transport_valid_off,
            "transport_offset" => xmit_transport_off,
        ],
    },
];

/// The event `target` of the plan.
pub fn event(target: &str) -> Option<&'static Event> {
    EVENTS.iter().find(|e| e.target == target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::probes::{Candidate, Method, PLAN};

    /// Every classic tracepoint the plan attaches to is listed here (with no fields only when
    /// its program reads none), and every event here is in the plan: a new tracepoint
    /// candidate cannot attach with its fields unchecked by omission.
    #[test]
    fn every_tracepoint_of_the_plan_has_its_fields_and_no_other_is_listed() {
        let targets: Vec<&str> = PLAN
            .iter()
            .flat_map(|h| h.candidates)
            .flat_map(Candidate::halves)
            .filter(|h| h.method == Method::Tracepoint)
            .map(|h| h.target)
            .collect();
        for t in &targets {
            assert!(event(t).is_some(), "{t} has no entry in EVENTS");
        }
        for e in EVENTS {
            assert!(
                targets.contains(&e.target),
                "{} is not in the plan",
                e.target
            );
        }
    }

    #[test]
    fn each_field_sets_its_own_slot() {
        let mut c = Config::zeroed();
        for f in event("raw_syscalls:sys_exit").unwrap().fields {
            (f.set)(&mut c, if f.name == "id" { 8 } else { 16 });
        }
        assert_eq!((c.tp.sys_exit_id_off, c.tp.sys_exit_ret_off), (8, 16));
        assert_eq!(c.tp.sys_enter_id_off, 0);
    }
}
