//! How the CNI plugin tells the agent that an endpoint record changed: one datagram on a
//! Unix socket in the state directory, sent after the record is written or removed. The
//! agent then reads the records at once (and still every [`SAFETY_RESYNC`], in case a
//! datagram was lost while it was restarting). Fire and forget: a plugin never waits
//! for the agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket's file name in the state directory.
pub const SOCKET_NAME: &str = "endpoints.sock";
/// The agent re-reads the records this often even without a datagram.
pub const SAFETY_RESYNC: Duration = Duration::from_secs(10);

/// The socket's path.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Tells the agent (if it runs) that `container_id`'s record changed.
pub fn notify(state_dir: &Path, container_id: &str) {
    if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = s.set_nonblocking(true);
        let _ = s.send_to(container_id.as_bytes(), socket_path(state_dir));
    }
}

/// The agent's end (a stale socket from an earlier run is replaced).
pub fn bind(state_dir: &Path) -> std::io::Result<tokio::net::UnixDatagram> {
    let path = socket_path(state_dir);
    let _ = std::fs::remove_file(&path);
    tokio::net::UnixDatagram::bind(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_datagram_reaches_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let sock = bind(dir.path()).unwrap();
        notify(dir.path(), "abc");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"abc");
        // no agent: the plugin does not block or fail
        drop(sock);
        notify(dir.path(), "abc");
    }
}
