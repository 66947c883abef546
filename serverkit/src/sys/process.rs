//! What a child process inherits.

use std::os::fd::RawFd;

use tokio::process::Command;

/// Makes the child that `command` starts keep `fd` open across exec (the parent's copy keeps
/// its close-on-exec flag, which is per process) and receive SIGTERM when its parent dies.
pub fn inherit_and_die_with_parent(command: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe calls (fcntl, prctl), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}
