//! A disk for the guest's /var/tmp, where zc-trace puts its payload: an image with ext4, xfs or
//! btrfs on a virtio disk, so that the payload lives in a disk file system's page cache as on a
//! real host, or tmpfs (shmem has its own read, mmap and splice paths).
//!
//! Debian kernels build virtio-blk, xfs and btrfs (and, on some flavours, ext4 and the virtio
//! PCI transport) as modules, so the initramfs carries the modules the guest needs, resolved
//! from the kernel's own package with their `depends=` (the package has no modules.dep: depmod
//! makes it at install time). Modules built in (`modules.builtin`) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::{output, run, Result};

use super::kernels::Fetched;
use super::tools::Tools;

/// Size of the sparse image (mkfs.xfs wants more than 300 MB, mkfs.btrfs 114 MiB).
const IMAGE_MIB: u64 = 512;

/// The guest's /var/tmp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VarTmp {
    Ext4,
    Xfs,
    Btrfs,
    /// tmpfs (shmem), no disk.
    Tmpfs,
}

impl VarTmp {
    /// Every file system the matrix runs, in order.
    pub const ALL: &'static [VarTmp] = &[VarTmp::Ext4, VarTmp::Tmpfs, VarTmp::Xfs, VarTmp::Btrfs];

    pub fn name(self) -> &'static str {
        match self {
            VarTmp::Ext4 => "ext4",
            VarTmp::Xfs => "xfs",
            VarTmp::Btrfs => "btrfs",
            VarTmp::Tmpfs => "tmpfs",
        }
    }

    /// Whether the boot gets the NIC pair (`qemu::nic_pair_args`): with a disk, so that
    /// `--cold` reads the file by the disk's DMA too. One file system is enough for it.
    pub fn nic_pair(self) -> bool {
        self == VarTmp::Ext4
    }

    /// Modules the guest loads, in order, where the kernel does not build them in: the virtio
    /// disk, then the file system. Loading crc32c_generic first where it exists as a module
    /// registers crc32c before a file system asks the crypto API for it (the guest has no
    /// modprobe to load it on demand); veth is for the veth sink.
    fn modules(self) -> (&'static [&'static str], &'static [&'static str]) {
        const OPTIONAL: &[&str] = &["crc32c_generic", "veth", "vmxnet3"];
        match self {
            VarTmp::Ext4 => (&["virtio_pci", "virtio_blk", "ext4"], OPTIONAL),
            VarTmp::Xfs => (&["virtio_pci", "virtio_blk", "xfs"], OPTIONAL),
            VarTmp::Btrfs => (&["virtio_pci", "virtio_blk", "btrfs"], OPTIONAL),
            VarTmp::Tmpfs => (&[], &["veth"]),
        }
    }
}

/// A module to load, in load order.
pub struct Module {
    pub name: String,
    /// Uncompressed .ko contents.
    pub image: Vec<u8>,
}

/// The modules (with their dependencies, dependencies first) the guest needs for `var_tmp` on
/// this kernel; built-in ones are left out.
pub fn modules_for(tools: &Tools, kernel: &Fetched, var_tmp: VarTmp) -> Result<Vec<Module>> {
    let dir = &kernel.modules;
    let builtin: BTreeSet<String> = std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(module_name)
        .collect();
    let mut files = BTreeMap::new();
    index(&dir.join("kernel"), &mut files)?;

    let (wanted, optional) = var_tmp.modules();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let present = |m: &&&str| files.contains_key(&canonical(m));
    for w in optional.iter().filter(present).chain(wanted) {
        resolve(
            tools,
            &canonical(w),
            &builtin,
            &files,
            &mut seen,
            &mut order,
        )?;
    }
    Ok(order)
}

fn resolve(
    tools: &Tools,
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
    let image = read_module(tools, path)?;
    for dep in modinfo(&image, "depends")
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        resolve(tools, &canonical(dep), builtin, files, seen, order)?;
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

fn read_module(tools: &Tools, path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    if !name.ends_with(".xz") {
        // Debian compresses modules with xz; an uncompressed one is read as it is.
        return std::fs::read(path).map_err(|e| format!("{name}: {e}"));
    }
    let out = tools
        .command("xz")?
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot start xz: {e}"))?;
    if !out.status.success() {
        return Err(format!("xz -dc {name} failed ({})", out.status));
    }
    Ok(out.stdout)
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

/// Makes a fresh, empty image of `var_tmp`'s file system at `path` (sparse), with options the
/// kernel `release` can mount (xfsprogs' `lts_<major>.<minor>.conf` where it has one).
pub fn make_image(tools: &Tools, var_tmp: VarTmp, release: &str, path: &Path) -> Result {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.set_len(IMAGE_MIB << 20)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    drop(file);
    let mut cmd = match var_tmp {
        VarTmp::Ext4 => {
            let mut c = tools.command("mkfs.ext4")?;
            c.env("MKE2FS_CONFIG", tools.file("etc/mke2fs.conf")).args([
                "-q",
                "-F",
                "-L",
                "zc-var-tmp",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
            ]);
            c
        }
        VarTmp::Xfs => {
            let mut c = tools.command("mkfs.xfs")?;
            c.args(["-q", "-f", "-L", "zc-var-tmp"]);
            if let Some(conf) = xfs_lts_config(tools, release)? {
                let text = std::fs::read_to_string(&conf)
                    .map_err(|e| format!("{}: {e}", conf.display()))?;
                c.args(xfs_options(&text));
            }
            c
        }
        VarTmp::Btrfs => {
            let mut c = tools.command("mkfs.btrfs")?;
            c.args(["-q", "-f", "-L", "zc-var-tmp"]);
            c
        }
        VarTmp::Tmpfs => return Err("tmpfs needs no image".into()),
    };
    run(cmd.arg(path))
}

/// xfsprogs' options file for an LTS kernel ("6.1.0-56-cloud-amd64" -> lts_6.1.conf), when
/// the unpacked xfsprogs is newer than the kernel and has one: newer mkfs defaults can make file
/// systems that an older kernel refuses to mount. An xfsprogs no newer than the kernel makes
/// what it can mount by default (and bookworm's 6.1.0 cannot even parse its own lts_6.1.conf).
fn xfs_lts_config(tools: &Tools, release: &str) -> Result<Option<PathBuf>> {
    let version = output(tools.command("mkfs.xfs")?.arg("-V"))?;
    let xfsprogs = version
        .split_whitespace()
        .last()
        .and_then(major_minor)
        .ok_or_else(|| format!("cannot read the xfsprogs version from {version:?}"))?;
    let kernel = major_minor(release).ok_or_else(|| format!("kernel release {release:?}"))?;
    if xfsprogs <= kernel {
        return Ok(None);
    }
    let conf = tools.file(&format!(
        "usr/share/xfsprogs/mkfs/lts_{}.{}.conf",
        kernel.0, kernel.1
    ));
    Ok(conf.is_file().then_some(conf))
}

/// An xfsprogs options file as command-line options (`[metadata] crc=1` -> `-m crc=1`):
/// bookworm's xfsprogs 6.1.0 refuses its own lts_*.conf files, which put `nrext64` under
/// `[metadata]` where its parser wants it under `[inode]` (on the command line it is `-i`).
fn xfs_options(conf: &str) -> Vec<String> {
    let mut by_flag: Vec<(&str, Vec<String>)> = Vec::new();
    let mut section = "";
    for line in conf.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
            continue;
        }
        let flag = match (section, line.split('=').next().unwrap_or("")) {
            (_, "nrext64") | ("inode", _) => "-i",
            ("metadata", _) => "-m",
            ("naming", _) => "-n",
            ("data", _) => "-d",
            ("log", _) => "-l",
            ("realtime", _) => "-r",
            ("block", _) => "-b",
            ("sector", _) => "-s",
            _ => continue,
        };
        match by_flag.iter_mut().find(|(f, _)| *f == flag) {
            Some((_, opts)) => opts.push(line.to_string()),
            None => by_flag.push((flag, vec![line.to_string()])),
        }
    }
    by_flag
        .into_iter()
        .flat_map(|(flag, opts)| [flag.to_string(), opts.join(",")])
        .collect()
}

/// (major, minor) of "6.1.0-56-cloud-amd64", "7.3.4+deb13" or "6.1.0".
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(['.', '-', '+']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lts_options_file_becomes_command_line_options() {
        let conf =
            "# V5 features\n\n[metadata]\nnrext64=0\nbigtime=0\ncrc=1\n\n[inode]\nsparse=1\n";
        assert_eq!(
            xfs_options(conf),
            ["-i", "nrext64=0,sparse=1", "-m", "bigtime=0,crc=1"]
        );
    }

    #[test]
    fn versions_are_read_as_major_minor() {
        assert_eq!(major_minor("6.1.0-56-cloud-amd64"), Some((6, 1)));
        assert_eq!(major_minor("7.3.4+deb13-cloud-amd64"), Some((7, 3)));
        assert_eq!(major_minor("6.12.118+deb13-cloud-amd64"), Some((6, 12)));
        assert!((6, 1) < (6, 12) && (6, 12) < (7, 3));
        assert_eq!(major_minor("x"), None);
    }

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
