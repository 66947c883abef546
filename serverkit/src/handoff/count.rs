//! The receiver's count of open connections, which its senders read without a system call:
//! a small file mapped shared in both (on a tmpfs volume across containers, that is shared
//! memory).
//!
//! An API that receives handed-over connections publishes its open connections this way, so
//! that a balancer which never sees those connections close can still pick the least busy
//! API (`LB_MODE=handoff` with least-connections or power-of-two). Reading it costs one load
//! from memory per pick, where asking the API would cost a round trip.
//!
//! The file holds one native-endian `u64`. The writer never removes it: a restarted writer
//! opens the same file (so every reader's mapping stays valid) and starts again from zero.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use crate::sys::mapping::{Mapping, SIZE};

/// The file beside a handoff socket where its server publishes its open connections.
pub fn count_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".count");
    PathBuf::from(name)
}

/// The count beside the handoff socket at `socket`, created (or reused) and set to zero.
pub fn publish_beside(socket: &Path) -> Result<SharedCount, String> {
    let path = count_path(socket);
    SharedCount::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// The writing side.
pub struct SharedCount(Mapping);

impl SharedCount {
    /// Creates the file (readable by everyone: readers run as other users) or reuses it,
    /// and sets the count to zero.
    pub fn create(path: &Path) -> io::Result<SharedCount> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)?;
        file.set_len(SIZE as u64)?;
        let mapping = Mapping::new(&file, true)?;
        mapping.count().store(0, Relaxed);
        Ok(SharedCount(mapping))
    }

    /// Counts `n` more connections open.
    pub fn add(&self, n: u64) {
        self.0.count().fetch_add(n, Relaxed);
    }

    /// Counts `n` connections closed.
    pub fn sub(&self, n: u64) {
        self.0.count().fetch_sub(n, Relaxed);
    }
}

/// The reading side.
pub struct CountView {
    mapping: Mapping,
    /// Which file is mapped, to notice a writer that made a new one.
    inode: (u64, u64),
}

impl CountView {
    /// Maps the count file at `path` for reading.
    pub fn open(path: &Path) -> io::Result<CountView> {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.len() < SIZE as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a connection count", path.display()),
            ));
        }
        Ok(CountView {
            mapping: Mapping::new(&file, false)?,
            inode: (meta.dev(), meta.ino()),
        })
    }

    /// Whether `path` is still the file this view maps.
    pub fn maps(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode)
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.mapping.count().load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_the_writer_and_a_restart_starts_from_zero() {
        let dir = std::env::temp_dir().join(format!("serverkit-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = count_path(&dir.join("api.sock"));
        assert!(path.ends_with("api.sock.count"));
        assert!(CountView::open(&path).is_err(), "no file yet");
        let writer = SharedCount::create(&path).unwrap();
        let view = CountView::open(&path).unwrap();
        writer.add(3);
        writer.sub(1);
        assert_eq!(view.get(), 2);
        drop(writer);
        let restarted = SharedCount::create(&path).unwrap();
        assert_eq!(view.get(), 0, "same file, reset");
        assert!(view.maps(&path));
        restarted.add(1);
        assert_eq!(view.get(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
