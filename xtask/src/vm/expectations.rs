//! What each kernel of the matrix is expected to report, from
//! `zc-trace/tests/data/kernel-matrix.toml` (shared with zc-trace's own host test): per kernel,
//! the attach method of each hook, the probe-plan functions absent on purpose, and overrides of
//! the exact copy table. VM kernels are matched by `name` (as in `kernels::KERNELS`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::util::{workspace_root, Result};

use super::kernels::{self, Kernel};

pub use super::kernels::MATRIX_FILE;

/// The strategies of the exact copy table, in report order.
pub const STRATEGIES: &[&str] = &["read-write", "mmap-write", "sendfile", "splice"];

/// The copy figures of the exact table (JSON keys of `strategies[i].figures`).
pub const COPY_FIGURES: &[&str] = &[
    "copied_user_to_kernel_bytes",
    "copied_kernel_to_user_bytes",
    "copied_kernel_to_kernel_bytes",
    "by_reference_bytes",
    "cpu_copied_bytes",
    "receiver_copied_bytes",
];

/// The exact table, as multiples of the payload S: payload over loopback TCP, warm page cache,
/// sender side (and the receiver's read() loop).
pub fn exact_copies(strategy: &str, figure: &str) -> Option<f64> {
    // None: not checked (the file -> file strategies have no receiver).
    const NO: Option<f64> = None;
    let row: [Option<f64>; 6] = match strategy {
        //                 u2k        k2u        k2k        by_ref     cpu        recv
        "read-write" => [
            Some(1.0),
            Some(1.0),
            Some(0.0),
            Some(0.0),
            Some(2.0),
            Some(1.0),
        ],
        "mmap-write" | "odirect" => [
            Some(1.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(1.0),
            Some(1.0),
        ],
        "sendfile" | "splice" | "vmsplice" | "tee" => [
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(1.0),
            Some(0.0),
            Some(1.0),
        ],
        // Spliced pages copied into the target file's page cache (ext4: no reflink).
        "sendfile-file" | "copy-file-range" => {
            [Some(0.0), Some(0.0), Some(1.0), Some(0.0), Some(1.0), NO]
        }
        // Pinned on send, copied on loopback delivery (the kernel's completion report).
        "msg-zerocopy" => [
            Some(0.0),
            Some(0.0),
            Some(1.0),
            Some(1.0),
            Some(1.0),
            Some(1.0),
        ],
        _ => return None,
    };
    let i = COPY_FIGURES.iter().position(|f| *f == figure)?;
    row[i]
}

#[derive(Debug, Clone, Deserialize)]
pub struct Matrix {
    pub kernel: Vec<KernelExpectations>,
}

/// One `[[kernel]]` of the matrix.
#[derive(Debug, Clone, Deserialize)]
pub struct KernelExpectations {
    pub name: String,
    /// Only for the host entry (matched by `uname -r`); VM kernels go by name.
    #[serde(default)]
    pub release_prefix: Option<String>,
    #[serde(default)]
    pub about: String,
    /// hook -> attach method ("none": not observable, `method` null in the probes JSON).
    #[serde(default)]
    pub methods: BTreeMap<String, String>,
    /// Probe-plan function -> why it is absent from this kernel.
    #[serde(default)]
    pub absent_functions: BTreeMap<String, String>,
    /// "<strategy>.<figure>" -> the value that replaces the exact table's.
    #[serde(default)]
    pub copies: BTreeMap<String, CopyOverride>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyOverride {
    /// Bytes, as a multiple of the payload.
    pub value: f64,
    pub reason: String,
}

/// The expected copy figure of one strategy, as a multiple of the payload, and the reason when
/// the kernel's entry overrides the exact table.
pub struct ExpectedCopy<'a> {
    pub multiple: f64,
    pub override_reason: Option<&'a str>,
}

impl KernelExpectations {
    pub fn expected_copy(&self, strategy: &str, figure: &str) -> Option<ExpectedCopy<'_>> {
        match self.copies.get(&format!("{strategy}.{figure}")) {
            Some(o) => Some(ExpectedCopy {
                multiple: o.value,
                override_reason: Some(&o.reason),
            }),
            None => exact_copies(strategy, figure).map(|multiple| ExpectedCopy {
                multiple,
                override_reason: None,
            }),
        }
    }

    /// Errors in the entry itself: copy overrides naming an unknown strategy or figure.
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for key in self.copies.keys() {
            let ok = key
                .split_once('.')
                .is_some_and(|(s, f)| STRATEGIES.contains(&s) && COPY_FIGURES.contains(&f));
            if !ok {
                errors.push(format!(
                    "kernel {}: [kernel.copies] key {key:?} is not \"<strategy>.<figure>\" with \
                     strategy one of {} and figure one of {}",
                    self.name,
                    STRATEGIES.join(", "),
                    COPY_FIGURES.join(", ")
                ));
            }
        }
        errors
    }
}

impl Matrix {
    /// The entry of `kernel`; every VM kernel has one (checked by [`load`]).
    pub fn get(&self, kernel: &Kernel) -> Result<&KernelExpectations> {
        self.kernel
            .iter()
            .find(|e| e.name == kernel.name)
            .ok_or_else(|| missing_entry(kernel))
    }
}

fn missing_entry(kernel: &Kernel) -> String {
    format!(
        "{MATRIX_FILE} has no [[kernel]] entry with name = {:?}: every VM kernel of \
         xtask/src/vm/kernels.rs needs one (its attach methods, absent functions and copy \
         overrides)",
        kernel.name
    )
}

pub fn path() -> PathBuf {
    workspace_root().join(MATRIX_FILE)
}

/// Reads and checks the matrix: it parses, each entry is valid, names are unique, and every
/// VM kernel has an entry.
pub fn load() -> Result<Matrix> {
    let path = path();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, &kernels::all()?)
}

pub fn parse(text: &str, kernels: &[Kernel]) -> Result<Matrix> {
    let matrix: Matrix = toml::from_str(text).map_err(|e| format!("{MATRIX_FILE}: {e}"))?;
    let mut errors: Vec<String> = matrix.kernel.iter().flat_map(|e| e.validate()).collect();
    for (i, e) in matrix.kernel.iter().enumerate() {
        if matrix.kernel[..i].iter().any(|o| o.name == e.name) {
            errors.push(format!("kernel {:?} has two entries", e.name));
        }
    }
    for k in kernels {
        if !matrix.kernel.iter().any(|e| e.name == k.name) {
            errors.push(missing_entry(k));
        }
    }
    for e in &matrix.kernel {
        if e.release_prefix.is_none() && !kernels.iter().any(|k| k.name == e.name) {
            let names: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
            errors.push(format!(
                "kernel {:?} is no VM kernel (those are: {}; see xtask/src/vm/kernels.rs) and \
                 has no release_prefix to match the host",
                e.name,
                names.join(", ")
            ));
        }
    }
    if errors.is_empty() {
        Ok(matrix)
    } else {
        Err(format!("{MATRIX_FILE}: {}", errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_matrix_covers_every_vm_kernel() {
        let m = load().unwrap();
        for k in &kernels::all().unwrap() {
            let e = m.get(k).unwrap();
            assert!(!e.methods.is_empty(), "{}: no methods", k.name);
        }
    }

    #[test]
    fn a_missing_kernel_is_a_clear_error() {
        let text = "[[kernel]]\nname = \"other\"\n[kernel.methods]\ntcp_send = \"fexit\"\n";
        let e = parse(text, &kernels::all().unwrap()).unwrap_err();
        assert!(e.contains("name = \"debian-12-6.1\""), "{e}");
        assert!(e.contains("name = \"debian-13-6.12\""), "{e}");
        assert!(e.contains("\"other\" is no VM kernel"), "{e}");
    }

    #[test]
    fn overrides_replace_the_exact_table() {
        let text = "[[kernel]]\nname = \"k\"\nrelease_prefix = \"6.\"\n[kernel.copies]\n\
                    \"sendfile.by_reference_bytes\" = { value = 0.5, reason = \"half\" }\n";
        let m = parse(text, &[]).unwrap();
        let e = &m.kernel[0];
        let o = e.expected_copy("sendfile", "by_reference_bytes").unwrap();
        assert_eq!((o.multiple, o.override_reason), (0.5, Some("half")));
        let x = e.expected_copy("read-write", "cpu_copied_bytes").unwrap();
        assert_eq!((x.multiple, x.override_reason), (2.0, None));
    }

    #[test]
    fn a_bad_override_key_is_an_error() {
        let text = "[[kernel]]\nname = \"k\"\nrelease_prefix = \"6.\"\n[kernel.copies]\n\
                    \"sendfile.by_ref\" = { value = 1.0, reason = \"typo\" }\n";
        let e = parse(text, &[]).unwrap_err();
        assert!(e.contains("\"sendfile.by_ref\""), "{e}");
    }
}
