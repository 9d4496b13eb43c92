//! An exclusive `flock(2)` on a file, waited for with a timeout: what serialises the
//! processes of one node (CNI invocations, the agent, `brindlectl`) around shared files.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Held until dropped (closing the file releases the lock).
pub struct Exclusive {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is locked by another process for over {secs} s")]
    Timeout { path: String, secs: u64 },
}

impl Exclusive {
    /// Takes the lock on `path` (created if missing, with its directory), waiting up to
    /// `timeout`.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Exclusive, LockError> {
        let open_err = |source| LockError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(open_err)?;
        let start = Instant::now();
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Exclusive { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(open_err(e));
            }
            if start.elapsed() >= timeout {
                return Err(LockError::Timeout {
                    path: path.display().to_string(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/lock");
        let a = Exclusive::acquire(&p, Duration::from_secs(1)).unwrap();
        let e = Exclusive::acquire(&p, Duration::from_millis(20));
        assert!(matches!(e, Err(LockError::Timeout { .. })), "{:?}", e.err());
        drop(a);
        Exclusive::acquire(&p, Duration::from_millis(20)).unwrap();
    }
}
