//! One `u64` in a file mapped shared: what several processes read and write without a
//! system call (the handoff's connection count, `crate::handoff::count`).

use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// The bytes mapped: one `u64`. The file must be at least this long.
pub(crate) const SIZE: usize = std::mem::size_of::<u64>();

/// One mapped `u64`, unmapped on drop.
pub(crate) struct Mapping(NonNull<AtomicU64>);

// SAFETY: the mapping is only ever accessed through an AtomicU64, which is Send and Sync.
unsafe impl Send for Mapping {}
// SAFETY: as for Send.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn new(file: &std::fs::File, writable: bool) -> std::io::Result<Mapping> {
        // Touching a mapping past the file's end would be a SIGBUS, not an error.
        if file.metadata()?.len() < SIZE as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is shorter than a u64",
            ));
        }
        let protection = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fresh shared mapping of an open file that is at least SIZE bytes long
        // (checked above); the kernel picks the address.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                protection,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // Page-aligned, so aligned for AtomicU64.
        Ok(Mapping(
            NonNull::new(address.cast()).expect("mmap never maps page 0"),
        ))
    }

    pub(crate) fn count(&self) -> &AtomicU64 {
        // SAFETY: valid and aligned for as long as the mapping lives.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no reference outlives `self`.
        unsafe { libc::munmap(self.0.as_ptr().cast(), SIZE) };
    }
}
