//! The control socket: one command per line, answered by data lines and a final `ok`
//! or `error: <message>` line. Several commands may be sent on one connection.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::server::{lock, Fault, Shared};

/// The commands, as `help` prints them.
pub const HELP: &str = "\
help                          this text
ping                          answers ok
stop [SECS]                   unavailable (listener closed, connections dropped), for SECS seconds or until start
start                         available again
apply FILE                    apply every object of a YAML file (CRDs first)
load FILE                     create every object of a JSON file (object, array, List or one per line) under one lock
delete KIND [NS/]NAME         delete an object (KIND: kind, plural, short name, or plural.group)
get KIND [NS/]NAME            print an object (one JSON line)
list KIND [NS]                print objects (JSON lines)
compact                       drop the event history: old resourceVersions get 410, watches end with 410
close-watches                 end every watch stream cleanly
conflict N                    the next N update/patch requests answer 409
fail VERB RESOURCE CODE COUNT the next COUNT VERB requests on RESOURCE (plural; * = any) answer CODE
clear-faults                  forget injected failures
latency MS                    delay every response by MS milliseconds
dump                          print every object (JSON lines)
stats                         print request counters (VERB RESOURCE COUNT)
rv                            print the current resourceVersion
watches                       print the number of open watches";

/// Sends one command to a control socket and returns its data lines (an `error:`
/// answer becomes an `Err`).
pub async fn request(socket: &Path, line: &str) -> anyhow::Result<Vec<String>> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{}\n", line.trim()).as_bytes()).await?;
    w.shutdown().await?;
    let mut lines = BufReader::new(r).lines();
    let mut out = Vec::new();
    while let Some(l) = lines.next_line().await? {
        if l == "ok" {
            return Ok(out);
        }
        if let Some(e) = l.strip_prefix("error: ") {
            anyhow::bail!("{e}");
        }
        out.push(l);
    }
    anyhow::bail!("the control socket closed without an answer")
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: std::os::unix::net::UnixListener,
    shutdown: CancellationToken,
) {
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("control socket: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    tokio::spawn(session(shared.clone(), s));
                }
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn session(shared: Arc<Shared>, stream: UnixStream) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let mut out = String::new();
        match execute(&shared, &line).await {
            Ok(data) => {
                for d in data {
                    out.push_str(&d);
                    out.push('\n');
                }
                out.push_str("ok\n");
            }
            Err(e) => {
                out.push_str("error: ");
                out.push_str(&e.replace('\n', " "));
                out.push('\n');
            }
        }
        if w.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn split_ref(s: &str) -> (Option<&str>, &str) {
    match s.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, s),
    }
}

fn json_line(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

async fn set_available(shared: &Arc<Shared>, up: bool) {
    let s = shared.clone();
    let _ = tokio::task::spawn_blocking(move || s.set_available(up)).await;
}

async fn execute(shared: &Arc<Shared>, line: &str) -> Result<Vec<String>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{s:?} is not a number"))
    };
    match words.as_slice() {
        ["help"] => Ok(HELP.lines().map(str::to_string).collect()),
        ["ping"] => Ok(Vec::new()),
        ["stop"] => {
            shared.outage_gen.fetch_add(1, Ordering::SeqCst);
            set_available(shared, false).await;
            Ok(Vec::new())
        }
        ["stop", secs] => {
            let secs = secs
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("{secs:?} is not a number of seconds"))?;
            let generation = shared.outage_gen.fetch_add(1, Ordering::SeqCst) + 1;
            set_available(shared, false).await;
            let s = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(secs).await;
                if s.outage_gen.load(Ordering::SeqCst) == generation {
                    set_available(&s, true).await;
                }
            });
            Ok(Vec::new())
        }
        ["start"] => {
            shared.outage_gen.fetch_add(1, Ordering::SeqCst);
            set_available(shared, true).await;
            Ok(Vec::new())
        }
        ["apply", file] => {
            let text = tokio::fs::read_to_string(file)
                .await
                .map_err(|e| format!("reading {file}: {e}"))?;
            let objs = shared.apply_text(&text).map_err(|e| format!("{e:#}"))?;
            Ok(vec![format!("applied {} objects", objs.len())])
        }
        ["load", file] => {
            let file = file.to_string();
            let s = shared.clone();
            let n = tokio::task::spawn_blocking(move || s.load_json_file(Path::new(&file)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{e:#}"))?;
            Ok(vec![format!("created {n} objects")])
        }
        ["delete", kind, r] => {
            let rt = shared.resolve(kind).map_err(|e| e.message)?;
            let (ns, name) = split_ref(r);
            shared
                .delete_obj(&rt.api_version(), &rt.kind, ns, name)
                .map(|_| Vec::new())
                .map_err(|e| e.message)
        }
        ["get", kind, r] => {
            let rt = shared.resolve(kind).map_err(|e| e.message)?;
            let (ns, name) = split_ref(r);
            shared
                .get_obj(&rt.api_version(), &rt.kind, ns, name)
                .map(|o| vec![json_line(&o)])
                .ok_or_else(|| format!("{} \"{name}\" not found", rt.qualified()))
        }
        ["list", kind, rest @ ..] if rest.len() <= 1 => {
            let rt = shared.resolve(kind).map_err(|e| e.message)?;
            Ok(shared
                .list_objs(&rt.api_version(), &rt.kind, rest.first().copied())
                .iter()
                .map(json_line)
                .collect())
        }
        ["compact"] => {
            shared.store().compact();
            Ok(Vec::new())
        }
        ["close-watches"] => {
            shared.store().close_watches();
            Ok(Vec::new())
        }
        ["conflict", n] => {
            let n = num(n)? as u32;
            let mut f = lock(&shared.faults);
            for verb in ["update", "patch"] {
                f.push(Fault {
                    verb: Some(verb.into()),
                    resource: None,
                    code: 409,
                    count: n,
                });
            }
            Ok(Vec::new())
        }
        ["fail", verb, resource, code, count] => {
            let code = num(code)?;
            if !(100..=599).contains(&code) {
                return Err(format!("{code} is not an HTTP status code"));
            }
            let any = |s: &str| (s != "*").then(|| s.to_string());
            lock(&shared.faults).push(Fault {
                verb: any(verb),
                resource: any(resource),
                code: code as u16,
                count: num(count)? as u32,
            });
            Ok(Vec::new())
        }
        ["clear-faults"] => {
            lock(&shared.faults).clear();
            Ok(Vec::new())
        }
        ["latency", ms] => {
            shared.latency_ms.store(num(ms)?, Ordering::Relaxed);
            Ok(Vec::new())
        }
        ["dump"] => Ok(shared.dump().iter().map(json_line).collect()),
        ["stats"] => Ok(lock(&shared.stats)
            .iter()
            .map(|((v, r), n)| format!("{v} {} {n}", if r.is_empty() { "-" } else { r }))
            .collect()),
        ["rv"] => Ok(vec![shared.store().resource_version().to_string()]),
        ["watches"] => Ok(vec![shared
            .active_watches
            .load(Ordering::Relaxed)
            .to_string()]),
        _ => Err(format!("unknown command {line:?}; try help")),
    }
}
