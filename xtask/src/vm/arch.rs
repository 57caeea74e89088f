//! The guests' architectures: what differs between an x86_64 and an arm64 guest, in one place
//! (the Debian packages, the Rust target of the guest's binaries, the qemu that boots it and
//! its machine, the serial console).

use serde::Deserialize;

/// The architecture of a VM kernel (`arch` in `[kernel.package]`, Debian's name; default
/// amd64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestArch {
    #[default]
    Amd64,
    Arm64,
}

impl GuestArch {
    /// Debian's name, for apt (`APT::Architecture`).
    pub fn debian(self) -> &'static str {
        match self {
            GuestArch::Amd64 => "amd64",
            GuestArch::Arm64 => "arm64",
        }
    }

    /// The Rust target the guest's static binaries are built for. x86_64: glibc, linked
    /// statically by the host's cc (as before there was an arm64 guest); arm64: musl, linked
    /// by rust-lld (`.cargo/config.toml`), since the host has no aarch64 C linker.
    pub fn rust_target(self) -> &'static str {
        match self {
            GuestArch::Amd64 => "x86_64-unknown-linux-gnu",
            GuestArch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The qemu executable (in the VM tools).
    pub fn qemu(self) -> &'static str {
        match self {
            GuestArch::Amd64 => "qemu-system-x86_64",
            GuestArch::Arm64 => "qemu-system-aarch64",
        }
    }

    /// The machine and CPU. arm64: qemu's `virt` board boots Debian's arm64 kernel (a raw
    /// `Image`, gzip-compressed, not an EFI zboot image) directly, no firmware; with the
    /// implementation-defined pointer-authentication algorithm, which TCG computes far faster
    /// than the architected QARMA.
    pub fn machine_args(self) -> &'static [&'static str] {
        match self {
            GuestArch::Amd64 => &["-cpu", "max"],
            GuestArch::Arm64 => &["-M", "virt", "-cpu", "max,pauth-impdef=on"],
        }
    }

    /// The serial console device the kernel writes to.
    pub fn console(self) -> &'static str {
        match self {
            GuestArch::Amd64 => "ttyS0",
            GuestArch::Arm64 => "ttyAMA0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_architecture_is_amd64() {
        #[derive(Deserialize)]
        struct P {
            #[serde(default)]
            arch: GuestArch,
        }
        let p: P = toml::from_str("").unwrap();
        assert_eq!(p.arch, GuestArch::Amd64);
        let p: P = toml::from_str("arch = \"arm64\"").unwrap();
        assert_eq!(p.arch.rust_target(), "aarch64-unknown-linux-musl");
        assert!(toml::from_str::<P>("arch = \"riscv64\"").is_err());
    }
}
