//! The source file every strategy reads: either the user's `--file` (opened read-only, never
//! modified) or a generated payload of non-repeating bytes in an unnamed temporary file, so that
//! nothing is left behind even if zc-trace is killed.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::InputError;

/// The seed of the default payload: the same bytes on every run and every host.
pub const DEFAULT_SEED: u64 = 0x7a63_2d74_7261_6365; // "zc-trace"

pub struct SourceFile {
    pub file: File,
    pub len: u64,
    /// What the report says about the source: the user's path, or "generated".
    pub origin: String,
    /// Filesystem type of the file (the kernel path it is read through depends on it).
    pub fs_type: String,
}

impl SourceFile {
    /// Opens a user-given file read-only.
    pub fn open(path: &Path) -> Result<Self, InputError> {
        let err = |reason: String| InputError::File {
            path: path.to_path_buf(),
            reason,
        };
        // Refuse what is not a regular file before opening it: open() on a FIFO waits for a
        // writer that may never come. O_NONBLOCK as well, for a path swapped in between; it
        // changes nothing for a regular file.
        not_regular(&std::fs::metadata(path).map_err(|e| err(e.to_string()))?)
            .map_or(Ok(()), |k| {
                Err(err(format!("is {k}; zc-trace needs a regular file")))
            })?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        let meta = file.metadata().map_err(|e| err(e.to_string()))?;
        if let Some(kind) = not_regular(&meta) {
            return Err(err(format!("is {kind}; zc-trace needs a regular file")));
        }
        if meta.len() == 0 {
            return Err(err("is empty; there is nothing to transfer".into()));
        }
        Ok(SourceFile {
            fs_type: fs_type(&file),
            file,
            len: meta.len(),
            origin: path.display().to_string(),
        })
    }

    /// Fails unless `dir`'s filesystem has `needed` bytes free for unprivileged use: filling it
    /// to the last byte before failing would stall everything else that writes there (the root
    /// disk, for the default /var/tmp).
    pub fn ensure_free_space(dir: &Path, needed: u64, what: &str) -> Result<(), InputError> {
        let err = |reason: String| InputError::TmpDir {
            path: dir.to_path_buf(),
            reason,
        };
        let st = nix::sys::statvfs::statvfs(dir).map_err(|e| err(e.to_string()))?;
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        if free < needed {
            return Err(err(format!(
                "has {free} bytes free; {what} needs {needed}: pick another --tmpdir or a \
                 smaller --size"
            )));
        }
        Ok(())
    }

    /// Creates `len` bytes of non-repeating data in `dir`.
    pub fn generate(dir: &Path, len: u64, seed: u64) -> Result<Self, InputError> {
        let err = |reason: String| InputError::TmpDir {
            path: dir.to_path_buf(),
            reason,
        };
        let mut file = create_unnamed(dir).map_err(|e| err(e.to_string()))?;
        fill(&mut file, len, seed).map_err(|e| err(format!("writing the payload: {e}")))?;
        Ok(SourceFile {
            fs_type: fs_type(&file),
            file,
            len,
            origin: format!("generated ({len} bytes, seed {seed:#x})"),
        })
    }

    /// Drops the file's pages from the page cache so the next read goes to the device.
    pub fn evict_from_page_cache(&self) -> std::io::Result<()> {
        nix::fcntl::posix_fadvise(
            self.file.as_raw_fd(),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .map_err(std::io::Error::from)
    }
}

/// An O_TMPFILE file (no name at all), or, where the filesystem does not support that, one
/// made in a private directory and unlinked at once (`private_file`).
fn create_unnamed(dir: &Path) -> std::io::Result<File> {
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not a directory",
        ));
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
    {
        Ok(f) => Ok(f),
        Err(e) => {
            log::info!(
                "O_TMPFILE in {} failed ({e}); using a private directory",
                dir.display()
            );
            private_file(dir)
        }
    }
}

/// A file with no name, made in a directory of zc-trace's own in `dir` (which others may
/// write: a named file there could be renamed and replaced under root's feet), the directory
/// removed again at once.
fn private_file(dir: &Path) -> std::io::Result<File> {
    let private = crate::resources::private_dir::PrivateDir::create(dir, "payload")
        .map_err(std::io::Error::other)?;
    private.unlinked_file("payload")
}

/// Writes `len` bytes from a xorshift64* stream: no block repeats, so no layer (page cache
/// dedup, compression on the wire) can make a copy cheaper than it really is.
fn fill(file: &mut File, len: u64, seed: u64) -> std::io::Result<()> {
    let mut rng = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        for word in block[..n].chunks_mut(8) {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            let v = rng.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    // Clean pages can be evicted by --cold; dirty ones cannot.
    file.sync_data()
}

/// What a non-regular file is, in words ("a FIFO"); None for a regular file.
fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    })
}

fn fs_type(file: &File) -> String {
    match nix::sys::statfs::fstatfs(file.as_fd()) {
        // `as _`: f_type is a signed long in glibc and an unsigned one in musl.
        Ok(s) => zc_trace_common::filesystems::name(s.filesystem_type().0 as _),
        Err(e) => format!("unknown ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};
    use std::path::PathBuf;

    /// The stand-in for O_TMPFILE: a file no path reaches, and nothing left in the directory
    /// (a named file in a directory others write could be renamed and replaced).
    #[test]
    fn the_fallback_file_has_no_name_and_leaves_nothing_behind() {
        let dir = temp_dir("fallback");
        let mut f = private_file(&dir).unwrap();
        f.write_all(b"payload").unwrap();
        let st = nix::sys::stat::fstat(f.as_raw_fd()).unwrap();
        assert_eq!(st.st_nlink, 0, "the file still has a name");
        assert_eq!(st.st_mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        std::fs::remove_dir(&dir).unwrap();
    }

    fn temp_dir(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zc-trace-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn generated_payload_has_the_size_and_no_repeated_blocks_and_no_name() {
        let dir = temp_dir("generated");
        let mut src = SourceFile::generate(&dir, 3 * 4096 + 5, DEFAULT_SEED).unwrap();
        assert_eq!(src.len, 3 * 4096 + 5);
        let mut data = Vec::new();
        src.file.rewind().unwrap();
        src.file.read_to_end(&mut data).unwrap();
        assert_eq!(data.len() as u64, src.len);
        let pages: Vec<&[u8]> = data.chunks(4096).take(3).collect();
        assert_ne!(pages[0], pages[1]);
        assert_ne!(pages[1], pages[2]);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "left a file behind"
        );
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn same_seed_same_bytes() {
        let dir = temp_dir("seed");
        std::fs::create_dir_all(&dir).unwrap();
        let read = |seed| {
            let mut s = SourceFile::generate(&dir, 10_000, seed).unwrap();
            let mut v = Vec::new();
            s.file.rewind().unwrap();
            s.file.read_to_end(&mut v).unwrap();
            v
        };
        assert_eq!(read(7), read(7));
        assert_ne!(read(7), read(8));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn user_files_are_checked() {
        let dir = temp_dir("user");
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        let e = SourceFile::open(&empty).err().unwrap().to_string();
        assert!(e.contains("is empty"), "{e}");
        let e = SourceFile::open(&dir).err().unwrap().to_string();
        assert!(e.contains("directory"), "{e}");
        let e = SourceFile::open(&dir.join("missing"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("No such file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
