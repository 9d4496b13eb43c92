//! `/metrics` (Prometheus text), `/liveness` and `/readiness` for the node agent.
//!
//! Readiness follows calico-node: at start every configured BGP peer must be Established;
//! once that has happened, one Established peer is enough. A node with no peers is ready.
//! Metrics are rendered from snapshots at scrape time (BGP status from the speaker,
//! dataplane counters from [`DataplaneMetrics`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use brindle_bgp::speaker::Speaker;
use brindle_bgp::status::{SessionState, SpeakerStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters the dataplane updates; read at scrape time.
#[derive(Debug, Default)]
pub struct DataplaneMetrics {
    pub routes_programmed: AtomicU64,
    pub local_endpoints: AtomicU64,
    pub applies: AtomicU64,
    pub resyncs: AtomicU64,
    pub errors: AtomicU64,
    /// Duration of the last apply, in microseconds.
    pub last_apply_micros: AtomicU64,
    /// The dataplane thread stopped with an error (liveness fails).
    pub stopped: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
struct AppState {
    speaker: Speaker,
    dataplane: Arc<DataplaneMetrics>,
    was_ready: Arc<Mutex<bool>>,
}

/// Readiness verdict from a status snapshot; `was_ready` remembers that the node was
/// fully up once.
pub fn readiness(status: &SpeakerStatus, was_ready: &mut bool) -> Result<String, String> {
    let down: Vec<String> = status
        .peers
        .iter()
        .filter(|p| p.state != SessionState::Established)
        .map(|p| p.peer_address.to_string())
        .collect();
    let up = status.peers.len() - down.len();
    if status.peers.is_empty() || down.is_empty() {
        *was_ready = true;
        return Ok(format!("ready: {up} BGP peers Established"));
    }
    if *was_ready && up > 0 {
        return Ok(format!(
            "ready: {up} BGP peers Established; not established: {}",
            down.join(", ")
        ));
    }
    Err(format!("BGP not established with {}", down.join(", ")))
}

/// Renders the metrics text.
pub fn render(status: &SpeakerStatus, dp: &DataplaneMetrics) -> String {
    let mut reg = Registry::default();
    let labels = |p: &brindle_bgp::status::PeerStatus| {
        vec![
            ("peer".to_string(), p.peer_address.to_string()),
            ("name".to_string(), p.name.clone()),
        ]
    };
    let established = Family::<Vec<(String, String)>, Gauge>::default();
    let state = Family::<Vec<(String, String)>, Gauge>::default();
    let rx = Family::<Vec<(String, String)>, Gauge>::default();
    let adv = Family::<Vec<(String, String)>, Gauge>::default();
    let upd_in = Family::<Vec<(String, String)>, Counter>::default();
    let upd_out = Family::<Vec<(String, String)>, Counter>::default();
    let resets = Family::<Vec<(String, String)>, Counter>::default();
    for p in &status.peers {
        let l = labels(p);
        established
            .get_or_create(&l)
            .set((p.state == SessionState::Established) as i64);
        state.get_or_create(&l).set(p.state as i64);
        rx.get_or_create(&l).set(p.prefixes_received as i64);
        adv.get_or_create(&l).set(p.prefixes_advertised as i64);
        upd_in.get_or_create(&l).inc_by(p.updates_in);
        upd_out.get_or_create(&l).inc_by(p.updates_out);
        resets.get_or_create(&l).inc_by(p.session_resets);
    }
    reg.register(
        "brindle_bgp_peer_established",
        "1 when the BGP session is Established",
        established,
    );
    reg.register(
        "brindle_bgp_peer_state",
        "RFC 4271 state: 0 Idle, 1 Connect, 2 Active, 3 OpenSent, 4 OpenConfirm, 5 Established",
        state,
    );
    reg.register(
        "brindle_bgp_prefixes_received",
        "Prefixes received from the peer",
        rx,
    );
    reg.register(
        "brindle_bgp_prefixes_advertised",
        "Prefixes advertised to the peer",
        adv,
    );
    reg.register(
        "brindle_bgp_updates_received",
        "UPDATE messages received",
        upd_in,
    );
    reg.register("brindle_bgp_updates_sent", "UPDATE messages sent", upd_out);
    reg.register(
        "brindle_bgp_session_resets",
        "Established sessions that went down",
        resets,
    );
    let g = |v: &AtomicU64| {
        let x = Gauge::<i64>::default();
        x.set(v.load(Ordering::Relaxed) as i64);
        x
    };
    let c = |v: &AtomicU64| {
        let x = Counter::<u64>::default();
        x.inc_by(v.load(Ordering::Relaxed));
        x
    };
    reg.register(
        "brindle_felix_routes_programmed",
        "Routes Brindle owns in the kernel",
        g(&dp.routes_programmed),
    );
    reg.register(
        "brindle_felix_active_local_endpoints",
        "Local pod interfaces",
        g(&dp.local_endpoints),
    );
    reg.register("brindle_felix_applies", "Dataplane applies", c(&dp.applies));
    reg.register(
        "brindle_felix_resyncs",
        "Periodic full resyncs",
        c(&dp.resyncs),
    );
    reg.register("brindle_felix_errors", "Dataplane errors", c(&dp.errors));
    let secs = Gauge::<f64, AtomicU64>::default();
    secs.set(dp.last_apply_micros.load(Ordering::Relaxed) as f64 / 1e6);
    reg.register(
        "brindle_felix_apply_duration_seconds",
        "Duration of the last dataplane apply",
        secs,
    );
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = s.speaker.status().await.unwrap_or_default();
    (
        [("content-type", "text/plain; version=0.0.4")],
        render(&st, &s.dataplane),
    )
}

async fn liveness(State(s): State<AppState>) -> impl IntoResponse {
    if s.dataplane.stopped.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "dataplane stopped (see the log)\n".to_string(),
        );
    }
    match s.speaker.status().await {
        Some(_) => (StatusCode::OK, "live\n".to_string()),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "BGP speaker not responding\n".to_string(),
        ),
    }
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let Some(st) = s.speaker.status().await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "BGP speaker not responding\n".to_string(),
        );
    };
    let mut was = s.was_ready.lock().unwrap_or_else(|e| e.into_inner());
    match readiness(&st, &mut was) {
        Ok(t) => (StatusCode::OK, t + "\n"),
        Err(t) => (StatusCode::SERVICE_UNAVAILABLE, t + "\n"),
    }
}

/// Serves the endpoints on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    speaker: Speaker,
    dataplane: Arc<DataplaneMetrics>,
) -> std::io::Result<()> {
    let state = AppState {
        speaker,
        dataplane,
        was_ready: Arc::new(Mutex::new(false)),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/liveness", get(liveness))
        .route("/readiness", get(ready))
        .with_state(state);
    let l = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(l, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_bgp::status::{PeerStatus, PeerType};

    fn peer(addr: &str, state: SessionState) -> PeerStatus {
        PeerStatus {
            peer_address: addr.parse().unwrap(),
            peer_port: 179,
            peer_type: PeerType::Global,
            peer_type_name: "global".into(),
            name: "Global_x".into(),
            as_number: 65000,
            local_as_number: 64512,
            state,
            since: String::new(),
            info: String::new(),
            last_error: None,
            prefixes_received: 3,
            prefixes_accepted: 3,
            prefixes_advertised: 2,
            messages_in: 0,
            messages_out: 0,
            updates_in: 4,
            updates_out: 5,
            session_resets: 1,
            hold_time: None,
            remote_router_id: None,
        }
    }

    #[test]
    fn readiness_like_calico_node() {
        let mut was = false;
        let mut s = SpeakerStatus {
            peers: vec![
                peer("10.0.0.2", SessionState::Established),
                peer("10.0.0.3", SessionState::Active),
            ],
            ..Default::default()
        };
        let e = readiness(&s, &mut was).unwrap_err();
        assert!(e.contains("10.0.0.3"));
        s.peers[1].state = SessionState::Established;
        assert!(readiness(&s, &mut was).is_ok());
        s.peers[1].state = SessionState::Idle;
        assert!(
            readiness(&s, &mut was).is_ok(),
            "one Established peer is enough later"
        );
        s.peers[0].state = SessionState::Idle;
        assert!(readiness(&s, &mut was).is_err());
        assert!(readiness(&SpeakerStatus::default(), &mut false).is_ok());
    }

    #[test]
    fn metrics_text() {
        let s = SpeakerStatus {
            peers: vec![peer("10.0.0.2", SessionState::Established)],
            ..Default::default()
        };
        let dp = DataplaneMetrics::default();
        dp.routes_programmed.store(7, Ordering::Relaxed);
        let t = render(&s, &dp);
        assert!(
            t.contains("brindle_bgp_peer_established{peer=\"10.0.0.2\",name=\"Global_x\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("brindle_bgp_updates_received_total{peer=\"10.0.0.2\",name=\"Global_x\"} 4"),
            "{t}"
        );
        assert!(t.contains("brindle_felix_routes_programmed 7"), "{t}");
        assert!(
            t.contains("brindle_bgp_peer_state{peer=\"10.0.0.2\",name=\"Global_x\"} 5"),
            "{t}"
        );
    }
}
