//! Working in a network namespace: netlink sockets and `/proc/sys/net` follow the calling
//! thread's namespace, so another namespace is entered on a dedicated thread
//! ([`in_netns`]) that `setns`es itself, and every piece of kernel work runs on a fresh
//! current-thread tokio runtime with its own netlink socket ([`with_netlink`]) — never a
//! runtime whose workers could be in another namespace.

use crate::podnet::{Error, Handle, REQUEST_TIMEOUT};
use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Opens a network namespace file (`/var/run/netns/x`, `/proc/<pid>/ns/net`).
pub fn open(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|source| Error::OpenNetns {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `f` with a netlink [`Handle`] (requests time out after [`REQUEST_TIMEOUT`]) in the
/// calling thread's network namespace, on a current-thread runtime of its own.
pub fn with_netlink<T, E, F, Fut>(f: F) -> Result<T, E>
where
    E: From<Error>,
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start a tokio runtime: {e}")))?;
    rt.block_on(async move { f(Handle::open(REQUEST_TIMEOUT)?).await })
}

/// Runs `f` on a dedicated thread that has entered the network namespace `ns`; `what`
/// names the work in the error when the thread panics.
pub fn in_netns<T, E>(
    ns: File,
    what: &str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Error> + Send + 'static,
{
    let joined = std::thread::Builder::new()
        .name("brindle-netns".into())
        .spawn(move || {
            // SAFETY: setns on a namespace fd we own; only this thread changes namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(Error::EnterNetns(std::io::Error::last_os_error()).into());
            }
            drop(ns);
            f()
        })
        .map_err(|e| Error::Internal(format!("cannot start a thread: {e}")))?
        .join();
    joined.unwrap_or_else(|_| {
        Err(Error::Internal(format!("internal error while {what} (thread panicked)")).into())
    })
}
