//! A disk for the guest's /var/tmp: an ext4 image on a virtio disk, so that zc-trace's payload
//! lives in a disk file system's page cache as on a real host, not in tmpfs (shmem has its own
//! read, mmap and splice paths).
//!
//! Debian's cloud kernels build ext4 in but virtio-blk (and on 6.1 the virtio PCI transport) as
//! modules, so the initramfs carries those modules, resolved from the kernel package with their
//! dependencies (the package has no modules.dep: that is made by depmod at install time).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::{command, run, Result};

/// Modules the guest needs for a virtio disk, where the kernel does not build them in.
pub const DISK_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

/// Size of the sparse ext4 image.
const IMAGE_MIB: u64 = 256;

/// A module to load, in load order.
pub struct Module {
    pub name: String,
    /// Uncompressed .ko contents.
    pub image: Vec<u8>,
}

/// The modules (with their dependencies, dependencies first) needed for `wanted` on the kernel
/// whose vmlinuz is given; built-in ones are left out.
pub fn modules_for(vmlinuz: &Path, wanted: &[&str]) -> Result<Vec<Module>> {
    let release = super::kernels::release_of(vmlinuz);
    let root = vmlinuz
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{}: not in <root>/boot", vmlinuz.display()))?;
    let dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&release))
        .find(|d| d.is_dir())
        .ok_or_else(|| {
            format!(
                "no modules directory for {release} under {}",
                root.display()
            )
        })?;

    let builtin: BTreeSet<String> = std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(module_name)
        .collect();
    let mut files = BTreeMap::new();
    index(&dir.join("kernel"), &mut files)?;

    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for w in wanted {
        resolve(&canonical(w), &builtin, &files, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn resolve(
    name: &str,
    builtin: &BTreeSet<String>,
    files: &BTreeMap<String, PathBuf>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<Module>,
) -> Result {
    if builtin.contains(name) || !seen.insert(name.to_string()) {
        return Ok(());
    }
    let path = files
        .get(name)
        .ok_or_else(|| format!("module {name} is neither built in nor in the kernel package"))?;
    let image = read_module(path)?;
    for dep in modinfo(&image, "depends")
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        resolve(&canonical(dep), builtin, files, seen, order)?;
    }
    order.push(Module {
        name: name.to_string(),
        image,
    });
    Ok(())
}

/// Module names use '_' and '-' interchangeably; the kernel reports them with '_'.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// "kernel/drivers/block/virtio_blk.ko.xz" -> "virtio_blk".
fn module_name(path: &str) -> Option<String> {
    let file = path.trim().rsplit('/').next()?;
    let stem = file.split(".ko").next()?;
    (file.contains(".ko") && !stem.is_empty()).then(|| canonical(stem))
}

fn index(dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> Result {
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            index(&path, files)?;
        } else if let Some(name) = path.to_str().and_then(module_name) {
            files.insert(name, path);
        }
    }
    Ok(())
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let decompressor = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match decompressor {
        None => std::fs::read(path).map_err(|e| format!("{name}: {e}")),
        Some(tool) => {
            let out = command(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .map_err(|e| format!("cannot start {tool}: {e}"))?;
            if !out.status.success() {
                return Err(format!("{tool} -dc {name} failed ({})", out.status));
            }
            Ok(out.stdout)
        }
    }
}

/// A `key=value` entry of a module's .modinfo section (found by scanning the image).
fn modinfo(image: &[u8], key: &str) -> String {
    let needle = format!("{key}=");
    image
        .split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(needle.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Makes a fresh, empty ext4 image at `path` (sparse).
pub fn make_ext4_image(path: &Path) -> Result {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.set_len(IMAGE_MIB << 20)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    drop(file);
    run(command("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            "zc-var-tmp",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
        ])
        .arg(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        assert_eq!(
            module_name("kernel/drivers/block/virtio_blk.ko").as_deref(),
            Some("virtio_blk")
        );
        assert_eq!(
            module_name("kernel/a/virtio-pci.ko.xz").as_deref(),
            Some("virtio_pci")
        );
        assert_eq!(module_name("kernel/a/modules.order"), None);
    }

    #[test]
    fn modinfo_entries() {
        let image = b"\x7fELF\0junk\0name=virtio_blk\0depends=virtio,virtio_ring\0vermagic=6.1\0";
        assert_eq!(modinfo(image, "depends"), "virtio,virtio_ring");
        assert_eq!(modinfo(image, "license"), "");
    }
}
