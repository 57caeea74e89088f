//! A directory of zc-trace's own inside a directory that others may write (`--tmpdir`), for
//! the FIFO and the UNIX socket of the pipe and unix sinks.
//!
//! zc-trace runs as root; the owner of `--tmpdir` (or anyone, where it is writable and not
//! sticky) can rename root's entries there and plant symlinks in their place. So nothing
//! inside is ever reached by a path through `--tmpdir`: the directory is made with
//! `mkdirat` (fails if the name exists), opened at once with `O_NOFOLLOW | O_DIRECTORY` and
//! checked (a directory, owned by this process's user, mode 0700), and from then on every
//! entry is made and opened relative to that descriptor, with `O_NOFOLLOW`, and checked
//! (type, device, inode) before use. A receiver process reaches it through
//! `/proc/PID/fd/N/`, the kernel's link to the open directory itself, which no rename in
//! `--tmpdir` can redirect. A directory renamed or replaced while a run uses it ends the run
//! with an error that says so: someone is tampering with root's files.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// An open private directory; removed (with what zc-trace made in it) on drop, or by cleanup
/// at a signal.
pub struct PrivateDir {
    inner: Arc<Inner>,
}

/// What cleanup needs to remove the directory from another thread.
#[derive(Debug)]
struct Inner {
    parent_path: PathBuf,
    parent: OwnedFd,
    name: String,
    dir: OwnedFd,
    id: (u64, u64),
}

/// An entry zc-trace made in the directory, with its identity.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: &'static str,
    id: (u64, u64),
    kind: SFlag,
}

fn id_of(st: &FileStat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Six random characters of a name (not a secret: `mkdirat` refuses a name that exists).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; 6];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { nix::libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Not secret, only unlikely to be taken: the time and a counter do as well.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = t.to_le_bytes()[..6].try_into().expect("6 bytes");
    }
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl PrivateDir {
    /// Makes `zc-trace-KIND.PID-START.XXXXXX` in `parent` (the leftover sweep knows the
    /// name).
    pub fn create(parent: &Path, kind: &str) -> Result<Self, String> {
        let parent_fd = openat(
            None,
            parent,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("opening it: {e}"))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let parent_fd = unsafe { OwnedFd::from_raw_fd(parent_fd) };
        let mut tries = 0;
        let name = loop {
            let name = crate::resources::names::temp_name(kind, &random_suffix());
            match mkdirat(Some(parent_fd.as_raw_fd()), name.as_str(), Mode::S_IRWXU) {
                Ok(()) => break name,
                Err(nix::errno::Errno::EEXIST) if tries < 100 => tries += 1,
                Err(e) => return Err(format!("making a directory in it: {e}")),
            }
        };
        let made = Inner::open(parent.to_path_buf(), parent_fd, name);
        match made {
            Ok(inner) => {
                let inner = Arc::new(inner);
                let undo = inner.clone();
                crate::resources::cleanup::register(key(&inner), move || undo.remove());
                Ok(PrivateDir { inner })
            }
            Err((parent_fd, name, why)) => {
                // Whatever now has the name is not known to be ours: it is left alone. The
                // directory made above is empty, wherever it was moved to.
                drop(parent_fd);
                Err(format!(
                    "the directory zc-trace made there ({name}) was replaced before it could \
                     be opened ({why}); someone who can write {} is tampering with it (an \
                     empty directory of zc-trace's may be left there under a name of their \
                     choosing): use a --tmpdir that only root can write",
                    parent.display()
                ))
            }
        }
    }

    /// Makes a regular file in the directory and takes its name away at once: a file only
    /// this descriptor holds, which no one can reach by any path (where a filesystem lacks
    /// O_TMPFILE, this is what stands in for it).
    pub fn unlinked_file(&self, name: &'static str) -> std::io::Result<std::fs::File> {
        let fd = openat(
            Some(self.inner.dir.as_raw_fd()),
            name,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        unlinkat(
            Some(self.inner.dir.as_raw_fd()),
            name,
            UnlinkatFlags::NoRemoveDir,
        )?;
        Ok(file)
    }

    /// Makes a FIFO in the directory, readable and writable by its owner only.
    pub fn make_fifo(&self, name: &'static str) -> Result<Entry, String> {
        nix::unistd::mkfifoat(
            Some(self.inner.dir.as_raw_fd()),
            name,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| format!("mkfifo {name}: {e}"))?;
        self.entry(name, SFlag::S_IFIFO)
    }

    /// An entry another process made in the directory through [`PrivateDir::proc_path`] (the
    /// receiver's UNIX socket), checked to be of `kind`.
    pub fn entry(&self, name: &'static str, kind: SFlag) -> Result<Entry, String> {
        let st = fstatat(
            Some(self.inner.dir.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("{name}: {e}"))?;
        if kind_of(&st) != kind {
            return Err(format!("{name} is not the kind of file zc-trace made"));
        }
        Ok(Entry {
            name,
            id: id_of(&st),
            kind,
        })
    }

    /// The path of `name` in the directory through this process's descriptor of it: valid
    /// for any process of the same user, whatever is renamed in `--tmpdir` meanwhile.
    pub fn proc_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}/{name}",
            std::process::id(),
            self.inner.dir.as_raw_fd()
        ))
    }

    /// Opens a FIFO made by [`PrivateDir::make_fifo`] for writing, after checking that the
    /// directory is still where it was made and the FIFO is the one made.
    pub fn open_fifo_for_writing(&self, entry: &Entry) -> std::io::Result<OwnedFd> {
        self.check_in_place().map_err(std::io::Error::other)?;
        let fd = openat(
            Some(self.inner.dir.as_raw_fd()),
            entry.name,
            OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        check_is(&fd, entry).map_err(std::io::Error::other)?;
        Ok(fd)
    }

    /// Fails when the directory is no longer at its name in `--tmpdir`: someone renamed or
    /// replaced it while zc-trace used it. The descriptor still works, so nothing is
    /// redirected; but root's files are being tampered with, and the run says so.
    pub fn check_in_place(&self) -> Result<(), String> {
        self.inner.check_in_place()
    }
}

/// Removes a dead run's private directory `name` in `parent` (`zc-trace cleanup`), checked as
/// one just made is (a directory of this user, mode 0700) and emptied through its descriptor.
pub fn remove_leftover(parent: &Path, name: &std::ffi::OsStr) -> Result<(), String> {
    let name = name
        .to_str()
        .ok_or("not a name zc-trace makes")?
        .to_string();
    let parent_fd = openat(
        None,
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", parent.display()))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let parent_fd = unsafe { OwnedFd::from_raw_fd(parent_fd) };
    let st = fstatat(
        Some(parent_fd.as_raw_fd()),
        name.as_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| e.to_string())?;
    if kind_of(&st) == SFlag::S_IFREG {
        // A named payload, as zc-trace made them before 0.1's private directories (mkstemp's
        // fallback where O_TMPFILE is not supported).
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(format!("owned by uid {}", st.st_uid));
        }
        return unlinkat(
            Some(parent_fd.as_raw_fd()),
            name.as_str(),
            UnlinkatFlags::NoRemoveDir,
        )
        .map_err(|e| e.to_string());
    }
    let inner = Inner::open(parent.to_path_buf(), parent_fd, name).map_err(|(_, _, why)| why)?;
    inner.remove();
    match inner.check_in_place() {
        Err(_) => Ok(()),
        Ok(()) => Err("it holds something zc-trace does not make (a directory); left".into()),
    }
}

/// Checks that an open descriptor is the entry zc-trace made.
pub fn check_is(fd: &OwnedFd, entry: &Entry) -> Result<(), String> {
    let st = fstat(fd.as_raw_fd()).map_err(|e| format!("fstat of {}: {e}", entry.name))?;
    if kind_of(&st) != entry.kind || id_of(&st) != entry.id {
        return Err(format!(
            "{} is not the file zc-trace made (it was replaced)",
            entry.name
        ));
    }
    Ok(())
}

impl Inner {
    /// Opens the directory just made and checks that it is the one made: a directory of this
    /// process's user with mode 0700. On failure the parent and the name come back.
    fn open(
        parent_path: PathBuf,
        parent: OwnedFd,
        name: String,
    ) -> Result<Self, (OwnedFd, String, String)> {
        let opened = openat(
            Some(parent.as_raw_fd()),
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            // SAFETY: openat returned a new descriptor that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(e) => return Err((parent, name, e.to_string())),
        };
        let st = match fstat(fd.as_raw_fd()) {
            Ok(st) => st,
            Err(e) => return Err((parent, name, e.to_string())),
        };
        let euid = nix::unistd::geteuid().as_raw();
        // The permission bits only: a directory made in a setgid --tmpdir inherits S_ISGID,
        // which gives no one access.
        if kind_of(&st) != SFlag::S_IFDIR || st.st_uid != euid || st.st_mode & 0o777 != 0o700 {
            return Err((
                parent,
                name,
                format!(
                    "it is owned by uid {} with mode {:o}, not zc-trace's 0700",
                    st.st_uid,
                    st.st_mode & 0o777
                ),
            ));
        }
        Ok(Inner {
            parent_path,
            parent,
            name,
            id: id_of(&st),
            dir: fd,
        })
    }

    fn check_in_place(&self) -> Result<(), String> {
        let now = fstatat(
            Some(self.parent.as_raw_fd()),
            self.name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        match now {
            Ok(st) if id_of(&st) == self.id => Ok(()),
            _ => Err(format!(
                "--tmpdir {}: zc-trace's directory {} was renamed or replaced while zc-trace \
                 used it; someone who can write {0} is tampering with root's files (nothing \
                 was sent or written through what they put there): use a --tmpdir that only \
                 root can write",
                self.parent_path.display(),
                self.name
            )),
        }
    }

    /// Removes what is in the directory (only zc-trace's own entries can be: it is 0700 and
    /// root's), then the directory, where it is now: at its name, or, if someone moved it,
    /// at the name its descriptor's path says, checked to be the same directory. An empty
    /// directory is all `rmdir` can remove, so a race there can cost nothing but that.
    fn remove(&self) {
        if let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", self.dir.as_raw_fd())) {
            for e in entries.flatten() {
                let _ = unlinkat(
                    Some(self.dir.as_raw_fd()),
                    e.file_name().as_os_str(),
                    UnlinkatFlags::NoRemoveDir,
                );
            }
        }
        if self.check_in_place().is_ok() {
            let _ = unlinkat(
                Some(self.parent.as_raw_fd()),
                self.name.as_str(),
                UnlinkatFlags::RemoveDir,
            );
            return;
        }
        let _ = self.remove_moved();
    }

    fn remove_moved(&self) -> Option<()> {
        let raw: RawFd = self.dir.as_raw_fd();
        let now = std::fs::read_link(format!("/proc/self/fd/{raw}")).ok()?;
        let name = now.file_name()?.to_os_string();
        let parent = openat(
            Some(raw),
            "..",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let parent = unsafe { OwnedFd::from_raw_fd(parent) };
        let st = fstatat(
            Some(parent.as_raw_fd()),
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ok()?;
        (id_of(&st) == self.id).then_some(())?;
        unlinkat(
            Some(parent.as_raw_fd()),
            name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        )
        .ok()
    }
}

/// The cleanup registry's key for a directory: its `Inner`, which the registered action keeps
/// alive (so the address names no other directory until it is forgotten).
fn key(inner: &Arc<Inner>) -> String {
    format!("private directory {:p}", Arc::as_ptr(inner))
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        self.inner.remove();
        crate::resources::cleanup::forget(&key(&self.inner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    fn parent(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zc-trace-pd-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_fifo_is_reached_through_the_descriptor_and_everything_is_removed() {
        let p = parent("fifo");
        let dir = PrivateDir::create(&p, "sink").unwrap();
        let names: Vec<_> = std::fs::read_dir(&p).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
        let meta = names[0].metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
        let fifo = dir.make_fifo("sink.fifo").unwrap();
        let path = dir.proc_path("sink.fifo");
        assert!(std::fs::symlink_metadata(&path).is_ok(), "{path:?}");
        // A reader first, so the write-side open does not wait.
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        dir.open_fifo_for_writing(&fifo).unwrap();
        drop(dir);
        assert_eq!(std::fs::read_dir(&p).unwrap().count(), 0, "left behind");
        std::fs::remove_dir(&p).unwrap();
    }

    /// A --tmpdir with the setgid bit (a shared group directory) gives the new directory
    /// S_ISGID too; that is still zc-trace's own private directory.
    #[test]
    fn a_setgid_tmpdir_is_accepted() {
        let p = parent("setgid");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o2755)).unwrap();
        let dir = PrivateDir::create(&p, "sink").unwrap();
        dir.make_fifo("sink.fifo").unwrap();
        drop(dir);
        assert_eq!(std::fs::read_dir(&p).unwrap().count(), 0, "left behind");
        std::fs::remove_dir(&p).unwrap();
    }

    /// The attack of the hardening issue, in one step: the directory is renamed and a
    /// symlink to another directory planted in its place. Nothing is opened through it, the
    /// next open fails and says why, and the moved directory is still removed.
    #[test]
    fn a_renamed_directory_is_not_followed_and_is_reported() {
        let p = parent("renamed");
        let elsewhere = parent("elsewhere");
        let dir = PrivateDir::create(&p, "sink").unwrap();
        let fifo = dir.make_fifo("sink.fifo").unwrap();
        let name = std::fs::read_dir(&p)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let moved = p.join("moved");
        std::fs::rename(&name, &moved).unwrap();
        nix::unistd::mkfifo(&elsewhere.join("sink.fifo"), Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &name).unwrap();
        let e = dir.open_fifo_for_writing(&fifo).unwrap_err().to_string();
        assert!(e.contains("was renamed or replaced"), "{e}");
        assert!(e.contains("only root can write"), "{e}");
        drop(dir);
        assert!(!moved.exists(), "the moved directory is removed too");
        assert!(
            std::fs::symlink_metadata(&name).is_ok(),
            "the planted link is not ours"
        );
        assert!(
            elsewhere.join("sink.fifo").exists(),
            "nothing of theirs removed"
        );
        std::fs::remove_dir_all(&p).unwrap();
        std::fs::remove_dir_all(&elsewhere).unwrap();
    }
}
