//! The BGP session state machine (RFC 4271 §8), sans-IO.
//!
//! A [`Session`] is one configured peer. It is driven by the caller with events named as
//! in RFC 4271 §8.1 (start/stop, TCP connection up/down, bytes received, time passing) and
//! answers with [`Action`]s (open a connection, send bytes, close a connection, hand over
//! received routes). It never touches a socket or a clock: `now` is always an argument,
//! so every transition is unit-tested deterministically.
//!
//! Up to two TCP connections may exist at once (ours and the peer's); each runs its own
//! OPEN exchange and the collision is resolved per §6.8 once the peer's BGP Identifier is
//! known.

use crate::codec::{
    self, Capabilities, GracefulRestart, Message, Open, Update, MAX_EXTENDED_LEN, MAX_LEN,
};
use crate::status::SessionState;
use crate::types::{codes, Afi, Notification, AS_TRANS};
use crate::validate::UpdateContext;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Identifies one TCP connection (assigned by the driver).
pub type ConnId = u64;

/// Session parameters (from configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub peer: IpAddr,
    pub local_as: u32,
    pub remote_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time (0 disables keepalives and the hold timer).
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Never initiate; wait for the peer to connect.
    pub passive: bool,
    /// Families offered in the OPEN.
    pub afis: Vec<Afi>,
    /// RFC 4724 restart time to advertise (None: no capability).
    pub graceful_restart_time: Option<u16>,
    /// RFC 4724 Restart State bit: set in the OPENs of a speaker that restarted gracefully,
    /// until the session is Established once.
    pub restarting: bool,
    /// First delay after an error before trying again; doubles up to `max_idle_hold`.
    pub idle_hold: Duration,
    pub max_idle_hold: Duration,
}

impl SessionConfig {
    pub fn new(peer: IpAddr, local_as: u32, remote_as: u32, router_id: Ipv4Addr) -> Self {
        SessionConfig {
            peer,
            local_as,
            remote_as,
            router_id,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            passive: false,
            afis: vec![Afi::of(&peer)],
            graceful_restart_time: Some(120),
            restarting: false,
            idle_hold: Duration::from_secs(1),
            max_idle_hold: Duration::from_secs(60),
        }
    }
    pub fn is_ebgp(&self) -> bool {
        self.local_as != self.remote_as
    }
}

/// What the session negotiated with its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub hold_time: u16,
    pub keepalive: u16,
    pub asn4: bool,
    pub afis: Vec<Afi>,
    pub route_refresh: bool,
    pub extended_message: bool,
    pub remote_id: Ipv4Addr,
    pub remote_caps: Capabilities,
}

impl Negotiated {
    pub fn max_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_LEN
        } else {
            MAX_LEN
        }
    }
    pub fn encode_ctx(&self) -> codec::EncodeContext {
        codec::EncodeContext {
            asn4: self.asn4,
            max_len: self.max_len(),
        }
    }
}

/// A peer that went down but may come back with its forwarding state preserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulDown {
    /// The peer's advertised restart time.
    pub restart_time: Duration,
    /// Families whose routes the peer asked to be retained.
    pub afis: Vec<Afi>,
}

/// Output of the state machine, for the driver to carry out in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open an outgoing TCP connection to the peer.
    Connect,
    /// Write these bytes on this connection.
    Send(ConnId, Vec<u8>),
    /// Close this connection (after writing what was queued).
    Close(ConnId),
    /// The session reached Established on this connection.
    Established(ConnId),
    /// The session left Established. With `graceful`, the peer may be restarting (RFC 4724:
    /// the connection ended without a NOTIFICATION and the peer can restart gracefully):
    /// keep its routes as stale for the given time; otherwise everything learned is gone.
    Down {
        reason: String,
        graceful: Option<GracefulDown>,
    },
    /// An UPDATE was received.
    Update(Box<Update>),
    /// The peer asked for our routes again (RFC 2918).
    RouteRefresh(Afi),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    outbound: bool,
    state: ConnState,
    buf: Vec<u8>,
    hold_deadline: Option<Instant>,
    keepalive_deadline: Option<Instant>,
    negotiated: Option<Negotiated>,
}

/// Counters and last error, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub messages_in: u64,
    pub messages_out: u64,
    pub updates_in: u64,
    pub updates_out: u64,
    pub session_resets: u64,
    pub established_count: u64,
}

/// OPENSENT hold time (RFC 4271 §8.2.2 suggests 4 minutes).
const LARGE_HOLD: Duration = Duration::from_secs(240);

/// One configured peer's session.
#[derive(Debug)]
pub struct Session {
    pub cfg: SessionConfig,
    state: SessionState,
    since: Instant,
    conns: Vec<Conn>,
    /// An outgoing connection attempt is under way.
    connecting: bool,
    connect_retry_deadline: Option<Instant>,
    idle_hold_deadline: Option<Instant>,
    idle_hold: Duration,
    started: bool,
    pub counters: Counters,
    pub last_error: Option<String>,
    /// Short text for `node status` INFO ("Established", "Connect Socket: Connection refused").
    pub info: String,
}

impl Session {
    pub fn new(cfg: SessionConfig, now: Instant) -> Self {
        let idle_hold = cfg.idle_hold;
        Session {
            cfg,
            state: SessionState::Idle,
            since: now,
            conns: Vec::new(),
            connecting: false,
            connect_retry_deadline: None,
            idle_hold_deadline: None,
            idle_hold,
            started: false,
            counters: Counters::default(),
            last_error: None,
            info: "Idle".into(),
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }
    pub fn since(&self) -> Instant {
        self.since
    }
    /// The Established connection and what it negotiated.
    pub fn established(&self) -> Option<(ConnId, &Negotiated)> {
        self.conns
            .iter()
            .find(|c| c.state == ConnState::Established)
            .and_then(|c| c.negotiated.as_ref().map(|n| (c.id, n)))
    }
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.established().map(|(_, n)| n)
    }
    pub fn conn_ids(&self) -> Vec<ConnId> {
        self.conns.iter().map(|c| c.id).collect()
    }

    fn set_state(&mut self, s: SessionState, now: Instant) {
        if s != self.state {
            self.state = s;
            self.since = now;
        }
    }

    /// The state shown to users: the most advanced connection, else Idle/Connect/Active.
    fn refresh_state(&mut self, now: Instant) {
        let best = self.conns.iter().map(|c| c.state).max_by_key(|s| match s {
            ConnState::OpenSent => 1,
            ConnState::OpenConfirm => 2,
            ConnState::Established => 3,
        });
        let s = match best {
            Some(ConnState::Established) => SessionState::Established,
            Some(ConnState::OpenConfirm) => SessionState::OpenConfirm,
            Some(ConnState::OpenSent) => SessionState::OpenSent,
            None if !self.started || self.idle_hold_deadline.is_some() => SessionState::Idle,
            None if self.connecting => SessionState::Connect,
            None => SessionState::Active,
        };
        if s == SessionState::Established {
            self.info = "Established".into();
        } else if matches!(s, SessionState::OpenSent | SessionState::OpenConfirm) {
            self.info = s.as_str().to_string();
        }
        self.set_state(s, now);
    }

    /// The earliest time at which [`Session::on_timer`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d = [self.connect_retry_deadline, self.idle_hold_deadline]
            .into_iter()
            .flatten()
            .min();
        for c in &self.conns {
            for t in [c.hold_deadline, c.keepalive_deadline]
                .into_iter()
                .flatten()
            {
                d = Some(d.map_or(t, |x: Instant| x.min(t)));
            }
        }
        d
    }

    // ------------------------------------------------------------------ events

    /// ManualStart / AutomaticStart (§8.1.2 events 1, 3, 4, 5).
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.started {
            return out;
        }
        self.started = true;
        self.info = if self.cfg.passive {
            "Active: waiting for the peer".into()
        } else {
            "Connect".into()
        };
        if !self.cfg.passive {
            self.initiate(now, &mut out);
        } else {
            self.refresh_state(now);
        }
        out
    }

    fn initiate(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.connect_retry_deadline = Some(now + self.cfg.connect_retry);
        if !self.cfg.passive && !self.connecting && self.conns.is_empty() {
            self.connecting = true;
            out.push(Action::Connect);
        }
        self.refresh_state(now);
    }

    /// ManualStop (event 2): send `notification` (Cease) on every connection and go Idle.
    pub fn stop(&mut self, now: Instant, notification: Notification) -> Vec<Action> {
        let mut out = Vec::new();
        let was_up = self.state == SessionState::Established;
        for c in std::mem::take(&mut self.conns) {
            out.push(Action::Send(
                c.id,
                codec::encode_notification(&notification),
            ));
            self.counters.messages_out += 1;
            out.push(Action::Close(c.id));
        }
        if was_up {
            out.push(Action::Down {
                reason: format!("stopped: {}", notification.describe()),
                graceful: None,
            });
        }
        self.started = false;
        self.connecting = false;
        self.connect_retry_deadline = None;
        self.idle_hold_deadline = None;
        self.info = "Idle: stopped".into();
        self.refresh_state(now);
        out
    }

    /// Stop for a graceful restart of this speaker (RFC 4724): connections whose peer can
    /// help (it advertised graceful restart) are closed without a NOTIFICATION so the peer
    /// keeps our routes until we are back; the others get `fallback` (a Cease).
    pub fn stop_graceful(&mut self, now: Instant, fallback: Notification) -> Vec<Action> {
        let mut out = Vec::new();
        let helps = self.conns.iter().any(|c| {
            c.state == ConnState::Established
                && c.negotiated
                    .as_ref()
                    .is_some_and(|n| n.remote_caps.graceful_restart.is_some())
        });
        if !helps {
            return self.stop(now, fallback);
        }
        for c in std::mem::take(&mut self.conns) {
            out.push(Action::Close(c.id));
        }
        out.push(Action::Down {
            reason: "stopped for a graceful restart".into(),
            graceful: None,
        });
        self.started = false;
        self.connecting = false;
        self.connect_retry_deadline = None;
        self.idle_hold_deadline = None;
        self.info = "Idle: stopped for a graceful restart".into();
        self.refresh_state(now);
        out
    }

    /// Time passed: fire every timer that is due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.idle_hold_deadline.is_some_and(|d| d <= now) {
            // IdleHoldTimer_Expires → AutomaticStart
            self.idle_hold_deadline = None;
            if self.started {
                self.initiate(now, &mut out);
            }
        }
        if self.connect_retry_deadline.is_some_and(|d| d <= now) {
            // ConnectRetryTimer_Expires (event 9)
            self.connect_retry_deadline = Some(now + self.cfg.connect_retry);
            if !self.cfg.passive && !self.connecting && self.conns.is_empty() {
                self.connecting = true;
                out.push(Action::Connect);
            }
            self.refresh_state(now);
        }
        let ids: Vec<ConnId> = self.conns.iter().map(|c| c.id).collect();
        for id in ids {
            let Some(c) = self.conns.iter_mut().find(|c| c.id == id) else {
                continue;
            };
            if c.hold_deadline.is_some_and(|d| d <= now) {
                // HoldTimer_Expires (event 10)
                let n = Notification::new(codes::HOLD_TIMER, 0, vec![]);
                self.fail(now, id, Some(n), "Hold timer expired".into(), &mut out);
                continue;
            }
            if c.keepalive_deadline.is_some_and(|d| d <= now) {
                // KeepaliveTimer_Expires (event 11)
                let ka = c.negotiated.as_ref().map_or(30, |n| n.keepalive);
                c.keepalive_deadline = Some(now + Duration::from_secs(ka.max(1) as u64));
                self.counters.messages_out += 1;
                out.push(Action::Send(id, codec::encode_keepalive()));
            }
        }
        out
    }

    /// Our outgoing connection is up (Tcp_CR_Acked, event 16).
    pub fn on_connected(&mut self, now: Instant, id: ConnId) -> Vec<Action> {
        self.connecting = false;
        let mut out = Vec::new();
        if !self.started || self.idle_hold_deadline.is_some() {
            out.push(Action::Close(id));
            return out;
        }
        self.open_conn(now, id, true, &mut out);
        out
    }

    /// Our outgoing connection failed (TcpConnectionFails, event 18).
    pub fn on_connect_failed(&mut self, now: Instant, error: &str) -> Vec<Action> {
        self.connecting = false;
        if self.conns.is_empty() && self.started {
            self.info = format!("Connect Socket: {error}");
        }
        self.refresh_state(now);
        Vec::new()
    }

    /// The peer connected to us (TcpConnectionConfirmed, event 17). Returns false (and a
    /// Close) when the connection is refused.
    pub fn on_incoming(&mut self, now: Instant, id: ConnId) -> Vec<Action> {
        let mut out = Vec::new();
        // Accepted also while idle-holding after an error (as BIRD and FRR do): the
        // back-off limits our own attempts; a peer that connects has backed off itself.
        let refuse = !self.started
            || self.conns.iter().any(|c| c.state == ConnState::Established)
            || self.conns.len() >= 2;
        if refuse {
            if self.conns.iter().any(|c| c.state == ConnState::Established) {
                out.push(Action::Send(
                    id,
                    codec::encode_notification(&Notification::cease(codes::CEASE_COLLISION)),
                ));
            }
            out.push(Action::Close(id));
            return out;
        }
        self.open_conn(now, id, false, &mut out);
        out
    }

    fn my_open(&self) -> Open {
        let my_as = if self.cfg.local_as > 0xffff {
            AS_TRANS as u16
        } else {
            self.cfg.local_as as u16
        };
        Open {
            version: 4,
            my_as,
            hold_time: self.cfg.hold_time,
            router_id: self.cfg.router_id,
            caps: Capabilities {
                afis: self.cfg.afis.clone(),
                four_octet_as: Some(self.cfg.local_as),
                route_refresh: true,
                enhanced_route_refresh: false,
                extended_message: true,
                graceful_restart: self.cfg.graceful_restart_time.map(|t| GracefulRestart {
                    restart_state: self.cfg.restarting && self.counters.established_count == 0,
                    notification: false,
                    time: t,
                    // forwarding state is preserved: the dataplane keeps routes across restarts
                    afis: self.cfg.afis.iter().map(|a| (*a, true)).collect(),
                }),
                add_path: Vec::new(),
                hostname: None,
                other: Vec::new(),
            },
        }
    }

    fn open_conn(&mut self, now: Instant, id: ConnId, outbound: bool, out: &mut Vec<Action>) {
        self.connect_retry_deadline = None;
        self.idle_hold_deadline = None;
        self.conns.push(Conn {
            id,
            outbound,
            state: ConnState::OpenSent,
            buf: Vec::new(),
            hold_deadline: Some(now + LARGE_HOLD),
            keepalive_deadline: None,
            negotiated: None,
        });
        self.counters.messages_out += 1;
        out.push(Action::Send(id, codec::encode_open(&self.my_open())));
        self.refresh_state(now);
    }

    /// The TCP connection was closed or broke (TcpConnectionFails, event 18).
    pub fn on_closed(&mut self, now: Instant, id: ConnId, why: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if self.conns.iter().any(|c| c.id == id) {
            self.fail(now, id, None, format!("Connection closed: {why}"), &mut out);
        }
        out
    }

    /// Bytes arrived on a connection.
    pub fn on_bytes(&mut self, now: Instant, id: ConnId, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(c) = self.conns.iter_mut().find(|c| c.id == id) else {
            return out;
        };
        c.buf.extend_from_slice(bytes);
        while let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
            let max = c.negotiated.as_ref().map_or(MAX_LEN, |n| n.max_len());
            let n = match codec::frame(&c.buf, max) {
                Ok(None) => break,
                Ok(Some(n)) => n,
                Err(notif) => {
                    let why = format!("sent {}", notif.describe());
                    self.fail(now, id, Some(notif), why, &mut out);
                    break;
                }
            };
            let frame: Vec<u8> = c.buf.drain(..n).collect();
            self.counters.messages_in += 1;
            let ctx = self.update_context(id);
            match codec::decode(&frame, &ctx) {
                Ok(m) => self.on_message(now, id, m, &mut out),
                Err(notif) => {
                    let why = format!("sent {}", notif.describe());
                    self.fail(now, id, Some(notif), why, &mut out);
                    break;
                }
            }
        }
        out
    }

    fn update_context(&self, id: ConnId) -> UpdateContext {
        let n = self
            .conns
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.negotiated.as_ref());
        UpdateContext {
            asn4: n.is_none_or(|n| n.asn4),
            ebgp: self.cfg.is_ebgp(),
            peer_as: self.cfg.remote_as,
            afis: n.map_or_else(|| self.cfg.afis.clone(), |n| n.afis.clone()),
            enforce_first_as: true,
        }
    }

    fn on_message(&mut self, now: Instant, id: ConnId, m: Message, out: &mut Vec<Action>) {
        let Some(idx) = self.conns.iter().position(|c| c.id == id) else {
            return;
        };
        let state = self.conns[idx].state;
        // Any message restarts the hold timer once hold time is negotiated (§8.2.2).
        if let Some(n) = &self.conns[idx].negotiated {
            if n.hold_time > 0 {
                self.conns[idx].hold_deadline = Some(now + Duration::from_secs(n.hold_time as u64));
            }
        }
        match (state, m) {
            (_, Message::Notification(n)) => {
                // NotifMsg (event 25): close without replying
                let why = format!("Received: {}", n.describe());
                self.fail_with(now, id, None, why, false, out);
            }
            (ConnState::OpenSent, Message::Open(o)) => self.on_open(now, idx, o, out),
            (ConnState::OpenConfirm, Message::Keepalive) => {
                // KeepAliveMsg (event 26) → Established
                let c = &mut self.conns[idx];
                c.state = ConnState::Established;
                self.idle_hold = self.cfg.idle_hold;
                self.counters.established_count += 1;
                self.last_error = None;
                // drop any other connection still negotiating
                let others: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|c| c.id != id)
                    .map(|c| c.id)
                    .collect();
                for o in others {
                    self.drop_conn(o, Some(Notification::cease(codes::CEASE_COLLISION)), out);
                }
                out.push(Action::Established(id));
                self.refresh_state(now);
            }
            (ConnState::Established, Message::Keepalive) => {}
            (ConnState::Established, Message::Update(mut u)) => {
                self.counters.updates_in += 1;
                // routes of a second family (MP_REACH next to the NLRI field) carry their
                // own next hop: hand them over as an UPDATE of their own
                let mp = u.mp_reach.take();
                out.push(Action::Update(Box::new(u)));
                out.extend(mp.map(Action::Update));
            }
            (ConnState::Established, Message::RouteRefresh { afi, safi, .. }) => {
                // RFC 2918: families we did not negotiate are ignored
                if let Some(a) = Afi::from_code(afi, safi) {
                    if self.conns[idx]
                        .negotiated
                        .as_ref()
                        .is_some_and(|n| n.afis.contains(&a))
                    {
                        out.push(Action::RouteRefresh(a));
                    }
                }
            }
            (s, m) => {
                // §8.2.2: any other message is an FSM error
                let sub = match s {
                    ConnState::OpenSent => codes::FSM_IN_OPENSENT,
                    ConnState::OpenConfirm => codes::FSM_IN_OPENCONFIRM,
                    ConnState::Established => codes::FSM_IN_ESTABLISHED,
                };
                let n = Notification::new(codes::FSM, sub, vec![]);
                let why = format!("unexpected {} in {:?}", m.kind(), s);
                self.fail(now, id, Some(n), why, out);
            }
        }
    }

    fn check_open(&self, o: &Open) -> Result<(), (Notification, String)> {
        let asn = o.asn();
        if asn != self.cfg.remote_as {
            return Err((
                Notification::new(
                    codes::OPEN,
                    codes::OPEN_BAD_PEER_AS,
                    o.my_as.to_be_bytes().to_vec(),
                ),
                format!(
                    "Bad peer AS: peer says AS {asn}, configured AS {}",
                    self.cfg.remote_as
                ),
            ));
        }
        if o.hold_time == 1 || o.hold_time == 2 {
            return Err((
                Notification::new(codes::OPEN, codes::OPEN_UNACCEPTABLE_HOLD, vec![]),
                format!("unacceptable hold time {}", o.hold_time),
            ));
        }
        if o.router_id.is_unspecified()
            || (!self.cfg.is_ebgp() && o.router_id == self.cfg.router_id)
        {
            return Err((
                Notification::new(
                    codes::OPEN,
                    codes::OPEN_BAD_BGP_ID,
                    o.router_id.octets().to_vec(),
                ),
                format!("bad BGP identifier {}", o.router_id),
            ));
        }
        Ok(())
    }

    fn on_open(&mut self, now: Instant, idx: usize, o: Open, out: &mut Vec<Action>) {
        let id = self.conns[idx].id;
        if let Err((n, why)) = self.check_open(&o) {
            self.fail(now, id, Some(n), why, out);
            return;
        }
        // Collision detection (§6.8) against the other connection, now that the peer's
        // BGP Identifier is known.
        if let Some(other) = self
            .conns
            .iter()
            .find(|c| c.id != id)
            .map(|c| (c.id, c.outbound, c.state))
        {
            let (oid, _o_out, ostate) = other;
            let drop_new = if ostate == ConnState::Established {
                true
            } else {
                // keep the connection initiated by the speaker with the higher BGP Identifier
                // RFC 6286 §2.3: equal identifiers (possible on eBGP) are broken by AS number
                let local_higher = if self.cfg.router_id == o.router_id {
                    self.cfg.local_as > o.asn()
                } else {
                    u32::from(self.cfg.router_id) > u32::from(o.router_id)
                };
                let this_outbound = self.conns[idx].outbound;
                // this connection survives if it was initiated by the higher side
                let this_survives = this_outbound == local_higher;
                !this_survives
            };
            if drop_new {
                self.drop_conn(id, Some(Notification::cease(codes::CEASE_COLLISION)), out);
                self.refresh_state(now);
                return;
            }
            self.drop_conn(oid, Some(Notification::cease(codes::CEASE_COLLISION)), out);
        }
        let Some(idx) = self.conns.iter().position(|c| c.id == id) else {
            return;
        };
        let hold = self.cfg.hold_time.min(o.hold_time);
        let keepalive = hold / 3;
        let mine = &self.cfg.afis;
        let theirs: Vec<Afi> = if o.caps.afis.is_empty() {
            vec![Afi::Ipv4]
        } else {
            o.caps.afis.clone()
        };
        let afis: Vec<Afi> = mine
            .iter()
            .copied()
            .filter(|a| theirs.contains(a))
            .collect();
        let neg = Negotiated {
            hold_time: hold,
            keepalive,
            asn4: o.caps.four_octet_as.is_some(),
            afis,
            route_refresh: o.caps.route_refresh,
            extended_message: o.caps.extended_message,
            remote_id: o.router_id,
            remote_caps: o.caps,
        };
        let c = &mut self.conns[idx];
        c.hold_deadline = (hold > 0).then(|| now + Duration::from_secs(hold as u64));
        c.keepalive_deadline =
            (hold > 0).then(|| now + Duration::from_secs(keepalive.max(1) as u64));
        c.negotiated = Some(neg);
        c.state = ConnState::OpenConfirm;
        self.counters.messages_out += 1;
        out.push(Action::Send(id, codec::encode_keepalive()));
        self.refresh_state(now);
    }

    fn drop_conn(&mut self, id: ConnId, n: Option<Notification>, out: &mut Vec<Action>) {
        if let Some(i) = self.conns.iter().position(|c| c.id == id) {
            self.conns.remove(i);
            if let Some(n) = n {
                self.counters.messages_out += 1;
                out.push(Action::Send(id, codec::encode_notification(&n)));
            }
            out.push(Action::Close(id));
        }
    }

    /// A connection ends in error: NOTIFICATION (if any), close, and when no connection is
    /// left, Idle with the idle hold timer (doubling backoff).
    fn fail(
        &mut self,
        now: Instant,
        id: ConnId,
        n: Option<Notification>,
        why: String,
        out: &mut Vec<Action>,
    ) {
        let quiet = n.is_none();
        self.fail_with(now, id, n, why, quiet, out)
    }

    /// `quiet`: the connection ended without any NOTIFICATION, sent or received.
    fn fail_with(
        &mut self,
        now: Instant,
        id: ConnId,
        n: Option<Notification>,
        why: String,
        quiet: bool,
        out: &mut Vec<Action>,
    ) {
        let conn = self
            .conns
            .iter()
            .find(|c| c.id == id && c.state == ConnState::Established);
        let was_established = conn.is_some();
        // RFC 4724 §4.2: a session that ends without a NOTIFICATION, with a peer that
        // advertised graceful restart, keeps the peer's routes (as stale) for its restart time.
        let graceful = match (
            conn.and_then(|c| c.negotiated.as_ref()),
            quiet,
            was_established,
        ) {
            (Some(neg), true, true) => neg.remote_caps.graceful_restart.as_ref().and_then(|gr| {
                let afis: Vec<Afi> = gr
                    .afis
                    .iter()
                    .map(|(a, _)| *a)
                    .filter(|a| neg.afis.contains(a))
                    .collect();
                (!afis.is_empty() && gr.time > 0).then(|| GracefulDown {
                    restart_time: Duration::from_secs(gr.time as u64),
                    afis,
                })
            }),
            _ => None,
        };
        self.drop_conn(id, n, out);
        self.last_error = Some(why.clone());
        self.info = why.clone();
        if was_established {
            self.counters.session_resets += 1;
            if graceful.is_some() {
                self.info = format!("{why}; peer restarting, keeping its routes");
            }
            out.push(Action::Down {
                reason: why,
                graceful: graceful.clone(),
            });
        }
        if self.conns.is_empty() && self.started {
            if graceful.is_some() {
                // the peer is coming back: no back-off, try again at once
                self.initiate(now, out);
            } else {
                self.idle_hold_deadline = Some(now + self.idle_hold);
                self.idle_hold = (self.idle_hold * 2).min(self.cfg.max_idle_hold);
                self.connect_retry_deadline = None;
            }
        }
        self.refresh_state(now);
    }

    /// Queue bytes for the Established connection (UPDATEs built by the RIB).
    pub fn send_updates(&mut self, msgs: Vec<Vec<u8>>) -> Vec<Action> {
        let Some((id, _)) = self.established() else {
            return Vec::new();
        };
        self.counters.messages_out += msgs.len() as u64;
        self.counters.updates_out += msgs.len() as u64;
        // sending restarts nothing: keepalive timer is only for idle periods, but resetting
        // it is allowed (§4.4); keep it simple and leave it.
        msgs.into_iter().map(|m| Action::Send(id, m)).collect()
    }

    /// Ask the peer to resend its routes (RFC 2918), when it supports it.
    pub fn request_refresh(&mut self) -> Vec<Action> {
        let Some((id, n)) = self.established() else {
            return Vec::new();
        };
        if !n.route_refresh {
            return Vec::new();
        }
        let msgs: Vec<Action> = n
            .afis
            .iter()
            .map(|a| Action::Send(id, codec::encode_route_refresh(*a)))
            .collect();
        self.counters.messages_out += msgs.len() as u64;
        msgs
    }
}

#[cfg(test)]
mod tests;
