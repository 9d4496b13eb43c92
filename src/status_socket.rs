//! The agent's status socket (`brindlectl node status`, `node routes`): a Unix socket
//! where a client writes one request line and reads one JSON document back.
//!
//! The socket is local but it is still a surface: a request line is bounded
//! ([`Limits::max_request`]: a longer one closes the connection instead of being buffered),
//! reading it and writing the answer are bounded in time, and only
//! [`Limits::max_connections`] connections are served at once (more are closed at once).

use crate::status::{
    snapshot, NodeRoutes, NodeStatus, SharedDataplaneStatus, SharedDatastoreStatus,
    SharedServiceStatus, ROUTES_REQUEST, STATUS_REQUEST,
};
use anyhow::Context;
use brindle_bgp::speaker::Speaker;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::warn;

/// What the answers are made of.
#[derive(Clone)]
pub struct Sources {
    pub speaker: Speaker,
    pub dataplane: SharedDataplaneStatus,
    pub datastore: SharedDatastoreStatus,
    pub services: SharedServiceStatus,
}

/// Bounds on what one client can make the agent hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, newline excluded.
    pub max_request: usize,
    /// Time to send the request line.
    pub read_timeout: Duration,
    /// Time to take the answer.
    pub write_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request: 4096,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 16,
        }
    }
}

/// Creates the socket's directory and binds it; a stale socket file from a previous run
/// is removed, but not one that an agent still answers on.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        // a stale socket from a previous run; refuse if an agent still answers on it
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another brindle-node is serving {}", path.display());
        }
        let _ = std::fs::remove_file(path);
    }
    UnixListener::bind(path)
        .with_context(|| format!("cannot bind status socket {}", path.display()))
}

/// Serves `status` and `routes` requests with the default [`Limits`] until the process ends.
pub async fn serve(listener: UnixListener, sources: Sources) {
    serve_with(listener, sources, Limits::default()).await
}

/// [`serve`] with other limits.
pub async fn serve_with(listener: UnixListener, sources: Sources, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut last_busy_warning: Option<Instant> = None;
    let mut refused = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "status socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // closed at once: the client sees the connection end without an answer
            refused += 1;
            if last_busy_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                warn!(
                    limit = limits.max_connections,
                    refused, "too many status socket connections at once: closing new ones"
                );
                last_busy_warning = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            handle(stream, &sources, limits).await;
            drop(slot);
        });
    }
}

/// Why a request line could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestError {
    TooLong,
    TimedOut,
    Io(std::io::ErrorKind),
}

/// Reads one request line of at most `max` bytes (newline excluded; a last line without
/// one is taken as it is). At most `max + 1` bytes are ever buffered.
pub async fn read_request<R: AsyncRead + Unpin>(
    rd: R,
    max: usize,
    timeout: Duration,
) -> Result<String, RequestError> {
    let mut rd = BufReader::with_capacity(512, rd.take(max as u64 + 1));
    let mut line = Vec::with_capacity(64);
    match tokio::time::timeout(timeout, rd.read_until(b'\n', &mut line)).await {
        Err(_) => return Err(RequestError::TimedOut),
        Ok(Err(e)) => return Err(RequestError::Io(e.kind())),
        Ok(Ok(_)) => {}
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(RequestError::TooLong);
    }
    Ok(String::from_utf8_lossy(&line).trim().to_string())
}

fn error_doc(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// The answer to one request line.
pub async fn answer(request: &str, sources: &Sources) -> String {
    match request {
        STATUS_REQUEST => match sources.speaker.status().await {
            Some(bgp) => {
                let doc = NodeStatus {
                    bgp,
                    dataplane: snapshot(&sources.dataplane),
                    datastore: snapshot(&sources.datastore),
                };
                serde_json::to_string(&doc).unwrap_or_else(|e| error_doc(&e.to_string()))
            }
            None => error_doc("the BGP speaker is not responding"),
        },
        ROUTES_REQUEST => match sources.speaker.routes().await {
            Some(bgp) => {
                let doc = NodeRoutes {
                    bgp,
                    services: snapshot(&sources.services),
                };
                serde_json::to_string(&doc).unwrap_or_else(|e| error_doc(&e.to_string()))
            }
            None => error_doc("the BGP speaker is not responding"),
        },
        other => {
            let shown: String = other.chars().take(64).collect();
            error_doc(&format!("unknown request {shown:?}"))
        }
    }
}

async fn handle(stream: UnixStream, sources: &Sources, limits: Limits) {
    let (rd, mut wr) = stream.into_split();
    let body = match read_request(rd, limits.max_request, limits.read_timeout).await {
        Ok(req) => answer(&req, sources).await,
        Err(RequestError::TooLong) => error_doc(&format!(
            "request longer than {} bytes: connection closed",
            limits.max_request
        )),
        Err(_) => return,
    };
    let _ = tokio::time::timeout(limits.write_timeout, async {
        let _ = wr.write_all(body.as_bytes()).await;
        let _ = wr.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_bgp::speaker::SpeakerConfig;
    use std::io::{Read, Write};

    fn sources() -> Sources {
        let (speaker, _fib) = Speaker::start(SpeakerConfig {
            node_name: "node-a".into(),
            router_id: "10.0.0.1".parse().unwrap(),
            local_as: 64512,
            listen: vec![],
            next_hop_v4: None,
            next_hop_v6: None,
            restarting: false,
        })
        .unwrap();
        Sources {
            speaker,
            dataplane: Default::default(),
            datastore: Default::default(),
            services: Default::default(),
        }
    }

    fn serving(limits: Limits) -> (tempfile::TempDir, std::path::PathBuf, Sources) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.sock");
        let l = bind(&path).unwrap();
        let s = sources();
        tokio::spawn(serve_with(l, s.clone(), limits));
        (dir, path, s)
    }

    /// Resident memory of this process, in KiB.
    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn request_lines_are_bounded() {
        let max = 16;
        let t = Duration::from_secs(1);
        assert_eq!(
            read_request(&b"status\n"[..], max, t).await.unwrap(),
            "status"
        );
        assert_eq!(
            read_request(&b"routes"[..], max, t).await.unwrap(),
            "routes"
        );
        let exact = [b'a'; 16];
        assert_eq!(
            read_request(&exact[..], max, t).await.unwrap(),
            "a".repeat(16)
        );
        let long = [b'a'; 17];
        assert_eq!(
            read_request(&long[..], max, t).await,
            Err(RequestError::TooLong)
        );
        let mut with_newline = vec![b'a'; 16];
        with_newline.push(b'\n');
        assert!(read_request(&with_newline[..], max, t).await.is_ok());
        let (_client, server) = UnixStream::pair().unwrap();
        assert_eq!(
            read_request(server, max, Duration::from_millis(50)).await,
            Err(RequestError::TimedOut)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_document_and_an_oversize_request() {
        let (_dir, path, s) = serving(Limits::default());
        crate::status::update(&s.datastore, |d| {
            *d = crate::status::DatastoreStatus::new("file /etc/brindle/brindle.yaml");
            d.connected = true;
        });
        let p = path.clone();
        let reply = tokio::task::spawn_blocking(move || {
            crate::ctl::request(&p, "status", Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap();
        let doc: NodeStatus = serde_json::from_str(&reply).unwrap();
        assert_eq!(doc.bgp.node_name, "node-a");
        assert_eq!(
            doc.datastore.unwrap().backend,
            "file /etc/brindle/brindle.yaml"
        );

        // 256 MiB without a newline: the agent stops reading after 4 KiB and closes, so
        // the client's writes fail early and the agent's memory does not grow
        let before = rss_kib();
        let p = path.clone();
        let (sent, answer) = tokio::task::spawn_blocking(move || {
            let mut c = std::os::unix::net::UnixStream::connect(&p).unwrap();
            c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let chunk = vec![b'a'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 256 << 20 {
                match c.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            let mut answer = String::new();
            let _ = c.read_to_string(&mut answer);
            (sent, answer)
        })
        .await
        .unwrap();
        let grown = rss_kib().saturating_sub(before);
        eprintln!("oversize request: client could write {sent} bytes; RSS grew by {grown} KiB");
        assert!(sent < 8 << 20, "the agent kept reading: {sent} bytes");
        assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
        assert!(
            answer.is_empty() || answer.contains("request longer than 4096 bytes"),
            "{answer}"
        );
        // and it still answers
        let p = path.clone();
        let reply = tokio::task::spawn_blocking(move || {
            crate::ctl::request(&p, "routes", Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap();
        assert!(reply.starts_with("{\"routes\":"), "{reply}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_limited_and_idle_ones_time_out() {
        let limits = Limits {
            max_connections: 2,
            read_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let (_dir, path, _s) = serving(limits);
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            // two clients that send nothing hold both slots
            let idle: Vec<_> = (0..2)
                .map(|_| std::os::unix::net::UnixStream::connect(&p).unwrap())
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            let started = Instant::now();
            let mut third = std::os::unix::net::UnixStream::connect(&p).unwrap();
            third
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let _ = third.write_all(b"status\n");
            let mut answer = String::new();
            let _ = third.read_to_string(&mut answer);
            assert!(
                answer.is_empty(),
                "a third connection is not served: {answer}"
            );
            assert!(
                started.elapsed() < Duration::from_millis(400),
                "closed at once"
            );
            // the idle ones are closed after the read timeout
            for mut c in idle {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut b = Vec::new();
                assert_eq!(c.read_to_end(&mut b).unwrap(), 0);
            }
            std::thread::sleep(Duration::from_millis(50));
            let reply = crate::ctl::request(&p, "status", Duration::from_secs(5)).unwrap();
            assert!(reply.contains("\"nodeName\":\"node-a\""), "{reply}");
            let reply = crate::ctl::request(&p, "bogus", Duration::from_secs(5)).unwrap();
            assert_eq!(reply, r#"{"error":"unknown request \"bogus\""}"#);
        })
        .await
        .unwrap();
    }
}
