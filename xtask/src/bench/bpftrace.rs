//! bpftrace, the reference the tax is compared with. It is not installed on the host (the
//! project changes no host package): Debian's `bpftrace` of this machine's release is resolved
//! in a private apt state, like the VM tools (`debian`), and unpacked into
//! `target/bench/tools/root/`, where it runs through the unpacked loader and libraries.

use std::path::PathBuf;
use std::process::Command;

use crate::debian::{fetch_unpacked, unpacked_command};
use crate::util::{output, workspace_root, Result};

pub struct Bpftrace {
    root: PathBuf,
    pub version: String,
}

const PACKAGES: &[&str] = &["bpftrace"];

fn dir() -> PathBuf {
    workspace_root().join("target/bench/tools")
}

impl Bpftrace {
    /// The unpacked bpftrace, fetched first where needed; Err says why it cannot be had.
    pub fn ensure() -> Result<Bpftrace> {
        let dir = dir();
        let stamp = dir.join("packages");
        let mut b = Bpftrace {
            root: dir.join("root"),
            version: String::new(),
        };
        let wanted = format!("{}\n", PACKAGES.join(" "));
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            if let Ok(v) = b.check() {
                b.version = v;
                return Ok(b);
            }
        }
        super::progress(&format!(
            "fetching bpftrace from this machine's Debian release into {} (nothing is installed \
             on this machine)",
            b.root.display()
        ));
        let _ = std::fs::remove_file(&stamp);
        fetch_unpacked("bench-bpftrace", PACKAGES, &b.root)?;
        b.version = b.check().map_err(|e| {
            format!(
                "bpftrace was unpacked into {} but does not run: {e}",
                b.root.display()
            )
        })?;
        std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
        Ok(b)
    }

    fn check(&self) -> Result<String> {
        Ok(output(self.command().arg("--version"))?.trim().to_string())
    }

    pub fn command(&self) -> Command {
        unpacked_command(&self.root, &self.root.join("usr/bin/bpftrace"), "bpftrace")
    }
}
