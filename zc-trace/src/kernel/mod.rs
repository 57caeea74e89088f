//! The kernel side: what this kernel offers (capabilities, BTF, tracefs,
//! syscall numbers, whether BPF memory is charged to RLIMIT_MEMLOCK: `memlock`), the probe plan (`probes`: every hook with its candidates), and loading
//! and attaching the eBPF object and reading its maps (`tracer`), and /proc's processes
//! (`processes`). It uses `resources` for what must be undone (a tracefs it mounts) and `ui`;
//! not the transfers nor the report.

pub mod btf;
pub mod capabilities;
pub mod memlock;
pub mod probes;
pub mod processes;
pub mod syscalls;
pub mod tracefs;
pub mod tracepoints;
pub mod tracer;
