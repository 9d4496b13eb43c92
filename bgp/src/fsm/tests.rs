use super::*;
use crate::codec::{decode, frame};
use crate::types::{AsSegment, Origin, PathAttrs, Prefix, SegmentKind};

const PEER: &str = "10.0.0.2";

fn cfg() -> SessionConfig {
    let mut c = SessionConfig::new(
        PEER.parse().unwrap(),
        64512,
        65000,
        "10.0.0.1".parse().unwrap(),
    );
    c.hold_time = 90;
    c
}

fn peer_open(asn: u32, hold: u16, id: &str) -> Vec<u8> {
    codec::encode_open(&Open {
        version: 4,
        my_as: if asn > 0xffff {
            AS_TRANS as u16
        } else {
            asn as u16
        },
        hold_time: hold,
        router_id: id.parse().unwrap(),
        caps: Capabilities {
            afis: vec![Afi::Ipv4],
            four_octet_as: Some(asn),
            route_refresh: true,
            ..Default::default()
        },
    })
}

/// Messages a list of actions sends on `id`, decoded.
fn sent(actions: &[Action], id: ConnId) -> Vec<Message> {
    let ctx = UpdateContext {
        asn4: true,
        ebgp: true,
        peer_as: 64512,
        afis: vec![Afi::Ipv4],
        enforce_first_as: false,
    };
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(i, b) if *i == id => {
                let n = frame(b, 65535).unwrap().unwrap();
                assert_eq!(n, b.len());
                Some(decode(b, &ctx).unwrap())
            }
            _ => None,
        })
        .collect()
}

fn notification(actions: &[Action], id: ConnId) -> Option<Notification> {
    sent(actions, id).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some(n),
        _ => None,
    })
}

/// Drives a fresh active session to Established on connection 1.
fn established(t0: Instant) -> Session {
    let mut s = Session::new(cfg(), t0);
    assert_eq!(s.start(t0), vec![Action::Connect]);
    s.on_connected(t0, 1);
    s.on_bytes(t0, 1, &peer_open(65000, 30, "10.0.0.2"));
    let a = s.on_bytes(t0, 1, &codec::encode_keepalive());
    assert!(a.contains(&Action::Established(1)));
    s
}

#[test]
fn idle_start_active_goes_to_connect() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    assert_eq!(s.state(), SessionState::Idle);
    assert_eq!(s.start(t0), vec![Action::Connect]);
    assert_eq!(s.state(), SessionState::Connect);
    // a second start is a no-op
    assert!(s.start(t0).is_empty());
}

#[test]
fn passive_start_waits_in_active() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.passive = true;
    let mut s = Session::new(c, t0);
    assert!(s.start(t0).is_empty());
    assert_eq!(s.state(), SessionState::Active);
    // no connect even after the retry interval
    assert!(s.on_timer(t0 + Duration::from_secs(30)).is_empty());
    let a = s.on_incoming(t0, 7);
    assert!(matches!(sent(&a, 7)[0], Message::Open(_)));
    assert_eq!(s.state(), SessionState::OpenSent);
}

#[test]
fn connect_failure_goes_active_then_retries() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    s.on_connect_failed(t0, "Connection refused");
    assert_eq!(s.state(), SessionState::Active);
    assert!(s.info.contains("Connection refused"));
    assert!(s.on_timer(t0 + Duration::from_secs(4)).is_empty());
    assert_eq!(
        s.on_timer(t0 + Duration::from_secs(5)),
        vec![Action::Connect]
    );
    assert_eq!(s.state(), SessionState::Connect);
}

#[test]
fn open_exchange_negotiates_hold_time() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    let a = s.on_connected(t0, 1);
    let Message::Open(o) = &sent(&a, 1)[0] else {
        panic!()
    };
    assert_eq!((o.asn(), o.hold_time), (64512, 90));
    assert!(o.caps.four_octet_as.is_some() && o.caps.route_refresh);
    assert_eq!(s.state(), SessionState::OpenSent);
    let a = s.on_bytes(t0, 1, &peer_open(65000, 30, "10.0.0.2"));
    assert_eq!(sent(&a, 1), vec![Message::Keepalive]);
    assert_eq!(s.state(), SessionState::OpenConfirm);
    let a = s.on_bytes(t0, 1, &codec::encode_keepalive());
    assert_eq!(a, vec![Action::Established(1)]);
    assert_eq!(s.state(), SessionState::Established);
    let n = s.negotiated().unwrap();
    assert_eq!((n.hold_time, n.keepalive, n.asn4), (30, 10, true));
}

#[test]
fn keepalive_timer_sends_keepalives() {
    let t0 = Instant::now();
    let mut s = established(t0);
    let a = s.on_timer(t0 + Duration::from_secs(10));
    assert_eq!(sent(&a, 1), vec![Message::Keepalive]);
}

#[test]
fn hold_timer_expiry_resets_and_backs_off() {
    let t0 = Instant::now();
    let mut s = established(t0);
    // keepalives from the peer keep it alive
    s.on_bytes(t0 + Duration::from_secs(20), 1, &codec::encode_keepalive());
    let a = s.on_timer(t0 + Duration::from_secs(40));
    assert!(!a.iter().any(|x| matches!(x, Action::Down { .. })));
    let t1 = t0 + Duration::from_secs(51);
    let a = s.on_timer(t1);
    let n = notification(&a, 1).unwrap();
    assert_eq!((n.code, n.subcode), (4, 0));
    assert!(a.contains(&Action::Close(1)));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Down { reason, .. } if reason.contains("Hold timer"))));
    assert_eq!(s.state(), SessionState::Idle);
    assert_eq!(s.counters.session_resets, 1);
    // idle hold 1 s, then connect again
    assert!(s.on_timer(t1 + Duration::from_millis(500)).is_empty());
    assert_eq!(
        s.on_timer(t1 + Duration::from_secs(1)),
        vec![Action::Connect]
    );
    // a second failure doubles the back-off
    s.on_connect_failed(t1 + Duration::from_secs(1), "x");
    s.on_connected(t1 + Duration::from_secs(2), 2);
    let a = s.on_bytes(
        t1 + Duration::from_secs(2),
        2,
        &peer_open(65001, 30, "10.0.0.2"),
    );
    assert!(a.contains(&Action::Close(2)));
    let t2 = t1 + Duration::from_secs(2);
    assert_eq!(s.state(), SessionState::Idle);
    assert!(s.on_timer(t2 + Duration::from_millis(1900)).is_empty());
    assert_eq!(
        s.on_timer(t2 + Duration::from_secs(2)),
        vec![Action::Connect]
    );
    // the peer may connect to us while we back off
    s.on_connect_failed(t2 + Duration::from_secs(2), "x");
    s.on_connected(t2 + Duration::from_secs(2), 3);
    s.on_bytes(
        t2 + Duration::from_secs(2),
        3,
        &peer_open(65001, 30, "10.0.0.2"),
    );
    let t3 = t2 + Duration::from_secs(2);
    assert_eq!(s.state(), SessionState::Idle);
    let a = s.on_incoming(t3, 4);
    assert!(matches!(sent(&a, 4)[0], Message::Open(_)));
    assert_eq!(s.state(), SessionState::OpenSent);
}

fn gr_open(id: &str, time: u16) -> Vec<u8> {
    codec::encode_open(&Open {
        version: 4,
        my_as: 65000,
        hold_time: 30,
        router_id: id.parse().unwrap(),
        caps: Capabilities {
            afis: vec![Afi::Ipv4],
            four_octet_as: Some(65000),
            graceful_restart: Some(GracefulRestart {
                restart_state: false,
                notification: false,
                time,
                afis: vec![(Afi::Ipv4, true)],
            }),
            ..Default::default()
        },
    })
}

fn established_with(t0: Instant, open: &[u8], c: SessionConfig) -> (Session, Vec<Action>) {
    let mut s = Session::new(c, t0);
    s.start(t0);
    let first = s.on_connected(t0, 1);
    s.on_bytes(t0, 1, open);
    s.on_bytes(t0, 1, &codec::encode_keepalive());
    assert_eq!(s.state(), SessionState::Established);
    (s, first)
}

#[test]
fn graceful_restart_capability_advertised_with_forwarding_state() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.restarting = true;
    let (_, first) = established_with(t0, &gr_open("10.0.0.2", 120), c);
    let Message::Open(o) = &sent(&first, 1)[0] else {
        panic!()
    };
    let gr = o.caps.graceful_restart.as_ref().unwrap();
    assert_eq!(gr.time, 120);
    assert!(gr.restart_state, "R bit after our own restart");
    assert_eq!(gr.afis, vec![(Afi::Ipv4, true)]);
}

#[test]
fn peer_closing_without_notification_is_a_graceful_down() {
    let t0 = Instant::now();
    let (mut s, _) = established_with(t0, &gr_open("10.0.0.2", 90), cfg());
    let a = s.on_closed(t0, 1, "closed by peer");
    let down = a.iter().find_map(|x| match x {
        Action::Down { graceful, .. } => Some(graceful.clone()),
        _ => None,
    });
    assert_eq!(
        down,
        Some(Some(GracefulDown {
            restart_time: Duration::from_secs(90),
            afis: vec![Afi::Ipv4]
        }))
    );
    // no back-off: reconnect at once
    assert!(a.contains(&Action::Connect));
    // a NOTIFICATION makes it a normal down
    let (mut s, _) = established_with(t0, &gr_open("10.0.0.2", 90), cfg());
    let a = s.on_bytes(t0, 1, &codec::encode_notification(&Notification::cease(2)));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Down { graceful: None, .. })));
    // a peer without the capability: normal down
    let (mut s, _) = established_with(t0, &peer_open(65000, 30, "10.0.0.2"), cfg());
    let a = s.on_closed(t0, 1, "closed by peer");
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Down { graceful: None, .. })));
}

#[test]
fn graceful_stop_closes_without_notification_when_the_peer_helps() {
    let t0 = Instant::now();
    let (mut s, _) = established_with(t0, &gr_open("10.0.0.2", 120), cfg());
    let a = s.stop_graceful(t0, Notification::cease(codes::CEASE_ADMIN_SHUTDOWN));
    assert!(notification(&a, 1).is_none());
    assert!(a.contains(&Action::Close(1)));
    let (mut s, _) = established_with(t0, &peer_open(65000, 30, "10.0.0.2"), cfg());
    let a = s.stop_graceful(t0, Notification::cease(codes::CEASE_ADMIN_SHUTDOWN));
    assert_eq!(
        notification(&a, 1).map(|n| (n.code, n.subcode)),
        Some((6, 2))
    );
}

#[test]
fn bad_peer_as_gets_open_error() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    s.on_connected(t0, 1);
    let a = s.on_bytes(t0, 1, &peer_open(65001, 90, "10.0.0.2"));
    let n = notification(&a, 1).unwrap();
    assert_eq!(
        (n.code, n.subcode, n.data),
        (2, 2, 65001u16.to_be_bytes().to_vec())
    );
    assert!(s.last_error.as_ref().unwrap().contains("65001"));
    assert_eq!(s.state(), SessionState::Idle);
}

#[test]
fn unacceptable_hold_time_and_bad_id() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    s.on_connected(t0, 1);
    let n = notification(&s.on_bytes(t0, 1, &peer_open(65000, 2, "10.0.0.2")), 1).unwrap();
    assert_eq!((n.code, n.subcode), (2, 6));
    let mut c = cfg();
    c.remote_as = 64512; // iBGP: same router id is an error
    let mut s = Session::new(c, t0);
    s.start(t0);
    s.on_connected(t0, 1);
    let n = notification(&s.on_bytes(t0, 1, &peer_open(64512, 90, "10.0.0.1")), 1).unwrap();
    assert_eq!((n.code, n.subcode), (2, 3));
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    s.on_connected(t0, 1);
    let n = notification(&s.on_bytes(t0, 1, &peer_open(65000, 90, "0.0.0.0")), 1).unwrap();
    assert_eq!((n.code, n.subcode), (2, 3));
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let t0 = Instant::now();
    // KEEPALIVE in OpenSent
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    s.on_connected(t0, 1);
    let n = notification(&s.on_bytes(t0, 1, &codec::encode_keepalive()), 1).unwrap();
    assert_eq!((n.code, n.subcode), (5, 1));
    // UPDATE in OpenConfirm
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    s.on_connected(t0, 1);
    s.on_bytes(t0, 1, &peer_open(65000, 90, "10.0.0.2"));
    let n = notification(&s.on_bytes(t0, 1, &codec::encode_end_of_rib(Afi::Ipv4)), 1).unwrap();
    assert_eq!((n.code, n.subcode), (5, 2));
    // OPEN in Established
    let mut s = established(t0);
    let a = s.on_bytes(t0, 1, &peer_open(65000, 90, "10.0.0.2"));
    assert_eq!(
        notification(&a, 1).map(|n| (n.code, n.subcode)),
        Some((5, 3))
    );
    assert!(a.iter().any(|x| matches!(x, Action::Down { .. })));
}

#[test]
fn received_notification_closes_without_reply() {
    let t0 = Instant::now();
    let mut s = established(t0);
    let a = s.on_bytes(t0, 1, &codec::encode_notification(&Notification::cease(2)));
    assert!(notification(&a, 1).is_none());
    assert!(a.contains(&Action::Close(1)));
    assert!(s
        .last_error
        .as_ref()
        .unwrap()
        .contains("Administrative Shutdown"));
}

#[test]
fn header_error_in_established() {
    let t0 = Instant::now();
    let mut s = established(t0);
    let mut k = codec::encode_keepalive();
    k[18] = 42;
    let a = s.on_bytes(t0, 1, &k);
    assert_eq!(
        notification(&a, 1).map(|n| (n.code, n.subcode, n.data)),
        Some((1, 3, vec![42]))
    );
    assert_eq!(s.state(), SessionState::Idle);
}

#[test]
fn split_and_coalesced_messages() {
    let t0 = Instant::now();
    let mut s = established(t0);
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: vec![AsSegment {
            kind: SegmentKind::Sequence,
            asns: vec![65000],
        }],
        next_hop: Some(PEER.parse().unwrap()),
        ..Default::default()
    };
    let p: Prefix = "192.0.2.0/24".parse().unwrap();
    let mut bytes =
        codec::encode_announce(&s.negotiated().unwrap().encode_ctx(), &attrs, &[p]).remove(0);
    bytes.extend(codec::encode_keepalive());
    let (x, y) = bytes.split_at(7);
    assert!(s.on_bytes(t0, 1, x).is_empty());
    let a = s.on_bytes(t0, 1, y);
    assert!(matches!(&a[..], [Action::Update(u)] if u.announced == vec![p]));
    assert_eq!(s.counters.updates_in, 1);
}

#[test]
fn route_refresh_for_negotiated_family_only() {
    let t0 = Instant::now();
    let mut s = established(t0);
    assert_eq!(
        s.on_bytes(t0, 1, &codec::encode_route_refresh(Afi::Ipv4)),
        vec![Action::RouteRefresh(Afi::Ipv4)]
    );
    assert!(s
        .on_bytes(t0, 1, &codec::encode_route_refresh(Afi::Ipv6))
        .is_empty());
}

#[test]
fn incoming_while_established_is_rejected() {
    let t0 = Instant::now();
    let mut s = established(t0);
    let a = s.on_incoming(t0, 9);
    assert_eq!(
        notification(&a, 9).map(|n| (n.code, n.subcode)),
        Some((6, 7))
    );
    assert!(a.contains(&Action::Close(9)));
    assert_eq!(s.state(), SessionState::Established);
}

#[test]
fn collision_keeps_connection_of_higher_id() {
    // local 10.0.0.1 < remote 10.0.0.2: the peer's (inbound) connection survives
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    s.on_connected(t0, 1); // outbound
    s.on_incoming(t0, 2); // inbound
    assert_eq!(s.conn_ids(), vec![1, 2]);
    // resolved as soon as the peer's identifier is known on either connection
    let a = s.on_bytes(t0, 2, &peer_open(65000, 90, "10.0.0.2"));
    assert_eq!(
        notification(&a, 1).map(|n| (n.code, n.subcode)),
        Some((6, 7))
    );
    assert_eq!(s.conn_ids(), vec![2]);
    // bytes for the dropped connection are ignored
    assert!(s
        .on_bytes(t0, 1, &peer_open(65000, 90, "10.0.0.2"))
        .is_empty());
    assert!(s
        .on_bytes(t0, 2, &codec::encode_keepalive())
        .contains(&Action::Established(2)));

    // local higher: our outbound connection survives, the inbound one is dropped
    let mut c = cfg();
    c.router_id = "10.0.0.9".parse().unwrap();
    let mut s = Session::new(c, t0);
    s.start(t0);
    s.on_connected(t0, 1);
    s.on_incoming(t0, 2);
    let a = s.on_bytes(t0, 1, &peer_open(65000, 90, "10.0.0.2"));
    assert!(a.contains(&Action::Close(2)));
    assert_eq!(s.conn_ids(), vec![1]);
}

#[test]
fn manual_stop_sends_cease() {
    let t0 = Instant::now();
    let mut s = established(t0);
    let a = s.stop(t0, Notification::cease(codes::CEASE_PEER_DECONFIGURED));
    assert_eq!(
        notification(&a, 1).map(|n| (n.code, n.subcode)),
        Some((6, 3))
    );
    assert!(a.iter().any(|x| matches!(x, Action::Down { .. })));
    assert_eq!(s.state(), SessionState::Idle);
    assert!(s.on_timer(t0 + Duration::from_secs(100)).is_empty());
}

#[test]
fn connection_closed_by_peer() {
    let t0 = Instant::now();
    let mut s = established(t0);
    let a = s.on_closed(t0, 1, "reset by peer");
    assert!(a.iter().any(|x| matches!(x, Action::Down { .. })));
    assert_eq!(s.state(), SessionState::Idle);
    assert!(s.next_deadline().is_some());
}

#[test]
fn zero_hold_time_means_no_keepalives() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    s.start(t0);
    s.on_connected(t0, 1);
    s.on_bytes(t0, 1, &peer_open(65000, 0, "10.0.0.2"));
    s.on_bytes(t0, 1, &codec::encode_keepalive());
    assert_eq!(s.state(), SessionState::Established);
    assert!(s.on_timer(t0 + Duration::from_secs(10_000)).is_empty());
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn two_octet_peer_with_large_local_as() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.local_as = 4_200_000_000;
    let mut s = Session::new(c, t0);
    s.start(t0);
    let a = s.on_connected(t0, 1);
    let Message::Open(o) = &sent(&a, 1)[0] else {
        panic!()
    };
    assert_eq!(o.my_as as u32, AS_TRANS);
    assert_eq!(o.asn(), 4_200_000_000);
    // a peer without the 4-octet capability
    let open = codec::encode_open(&Open {
        version: 4,
        my_as: 65000,
        hold_time: 90,
        router_id: "10.0.0.2".parse().unwrap(),
        caps: Capabilities::default(),
    });
    s.on_bytes(t0, 1, &open);
    s.on_bytes(t0, 1, &codec::encode_keepalive());
    let n = s.negotiated().unwrap();
    assert!(!n.asn4);
    assert_eq!(n.afis, vec![Afi::Ipv4]);
}

/// Found by fuzzing (fuzz/, target `decode`): an UPDATE announcing IPv4 NLRI and IPv6
/// MP_REACH_NLRI together is handed over as two UPDATEs, each with its own next hop.
#[test]
fn fuzz_mixed_family_update_is_split_per_next_hop() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.afis = vec![Afi::Ipv4, Afi::Ipv6];
    let mut s = Session::new(c, t0);
    s.start(t0);
    s.on_connected(t0, 1);
    let open = codec::encode_open(&Open {
        version: 4,
        my_as: 65000,
        hold_time: 30,
        router_id: "10.0.0.2".parse().unwrap(),
        caps: Capabilities {
            afis: vec![Afi::Ipv4, Afi::Ipv6],
            four_octet_as: Some(65000),
            ..Default::default()
        },
    });
    s.on_bytes(t0, 1, &open);
    assert!(s
        .on_bytes(t0, 1, &codec::encode_keepalive())
        .contains(&Action::Established(1)));
    let hex = "ffffffffffffffffffffffffffffffff004c0200000031800e1a00020110fd0000000000000000\
               00000000000002002020010db84001010040020602010000fde84003040a000002180a0000";
    let m: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let a = s.on_bytes(t0, 1, &m);
    let ups: Vec<&Update> = a
        .iter()
        .filter_map(|a| match a {
            Action::Update(u) => Some(&**u),
            _ => None,
        })
        .collect();
    assert_eq!(ups.len(), 2, "{a:?}");
    let v4: Prefix = "10.0.0.0/24".parse().unwrap();
    let v6: Prefix = "2001:db8::/32".parse().unwrap();
    assert_eq!(ups[0].announced, vec![v4]);
    assert_eq!(
        ups[0].attrs.as_ref().unwrap().next_hop,
        Some("10.0.0.2".parse().unwrap())
    );
    assert_eq!(ups[1].announced, vec![v6]);
    assert_eq!(
        ups[1].attrs.as_ref().unwrap().next_hop,
        Some("fd00::2".parse().unwrap())
    );
    assert!(ups.iter().all(|u| u.mp_reach.is_none()));
    assert_eq!(s.counters.updates_in, 1);
}
