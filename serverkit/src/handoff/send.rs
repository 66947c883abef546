//! The sending side of a handoff link, in a balancer: one `Link` per receiver, connected on
//! first use and again after it breaks (the receiver restarted), with the receiver's own
//! count of open connections (`count`) for placing by load.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::count::{count_path, CountView};
use super::wire;

/// How one send went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Handed over: the descriptors are the receiver's now, ours to close.
    Yes,
    /// The receiver has too much queued (it is at its connection limit): try another.
    Full,
    /// The receiver is not there, or its count cannot be read when it is needed: try another.
    Down,
}

/// The link to one receiver's handoff socket.
pub struct Link {
    socket: PathBuf,
    /// Whether a receiver whose count cannot be read is skipped: placing by load without it
    /// would silently degrade to round robin.
    needs_count: bool,
    fd: Mutex<Option<OwnedFd>>,
    count: Mutex<Option<CountView>>,
}

impl Link {
    /// A link to the handoff socket at `socket`, not connected yet.
    pub fn new(socket: &Path, needs_count: bool) -> Link {
        Link {
            socket: socket.to_owned(),
            needs_count,
            fd: Mutex::new(None),
            count: Mutex::new(None),
        }
    }

    /// Whether the receiver takes links now: a test link, connected and closed at once (the
    /// receiver sees it end before it carries anything). For a readiness check.
    pub fn reachable(&self) -> io::Result<()> {
        wire::connect(&self.socket).map(drop)
    }

    /// The connections the receiver reports open; 0 before its count was read.
    pub fn open_connections(&self) -> u64 {
        self.count
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, CountView::get)
    }

    /// Sends `fds` (1 to MAX_BATCH: the system call asserts it) in one message, over the
    /// link or, when it broke, over a new one (one reconnection per send: a receiver that
    /// refuses it is down).
    pub fn send(&self, fds: &[RawFd]) -> Sent {
        let mut link = self.fd.lock().unwrap();
        for _attempt in 0..2 {
            if link.is_none() {
                match self.connect() {
                    Ok(fd) => *link = Some(fd),
                    Err(_) => return Sent::Down,
                }
            }
            let fd = link.as_ref().expect("connected above").as_raw_fd();
            match wire::send(fd, fds) {
                Ok(()) => return Sent::Yes,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::Full,
                // Stopped (EPIPE) or gone: this link is done; a restarted receiver takes a new one.
                Err(_) => *link = None,
            }
        }
        Sent::Down
    }

    /// A new link, and the receiver's count mapped afresh if it made a new file (restarted).
    fn connect(&self) -> io::Result<OwnedFd> {
        let link = wire::connect(&self.socket)?;
        let path = count_path(&self.socket);
        let mut count = self.count.lock().unwrap();
        if !count.as_ref().is_some_and(|c| c.maps(&path)) {
            match CountView::open(&path) {
                Ok(view) => *count = Some(view),
                Err(e) if self.needs_count => {
                    tracing::warn!(
                        "handoff: {}: cannot read its connection count ({e}); placing by load \
                         needs it, so the receiver is skipped",
                        self.socket.display()
                    );
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        Ok(link)
    }
}
