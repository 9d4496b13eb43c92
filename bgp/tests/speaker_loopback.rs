//! Two speakers in one process over loopback: session up, routes both ways, withdrawal,
//! peer removal. (Real-router interop lives in the workspace's tests/.)

use brindle_bgp::rib::LocalRoute;
use brindle_bgp::speaker::{PeerConfig, Speaker, SpeakerConfig};
use brindle_bgp::status::SessionState;
use brindle_bgp::types::Prefix;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

fn lo() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

async fn wait<F: Fn() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, f: F) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn speaker(
    asn: u32,
    id: &str,
) -> (
    Speaker,
    tokio::sync::mpsc::UnboundedReceiver<brindle_bgp::rib::FibChange>,
) {
    Speaker::start(SpeakerConfig {
        node_name: id.into(),
        router_id: id.parse().unwrap(),
        local_as: asn,
        listen: vec![SocketAddr::new(lo(), 0)],
        next_hop_v4: Some(lo()),
        next_hop_v6: None,
        restarting: false,
    })
    .unwrap()
}

#[tokio::test]
async fn two_speakers_exchange_and_withdraw() {
    let (a, _fa) = speaker(64512, "1.1.1.1");
    let (b, mut fb) = speaker(65000, "2.2.2.2");
    let mut pa = PeerConfig::new(lo(), 65000, 64512);
    pa.port = b.listen_addrs()[0].port();
    pa.connect_retry = Duration::from_millis(300);
    let mut pb = PeerConfig::new(lo(), 64512, 65000);
    pb.passive = true;
    a.set_peers(vec![pa.clone()]);
    b.set_peers(vec![pb]);
    let p: Prefix = "10.65.0.0/26".parse().unwrap();
    a.set_local_routes(BTreeMap::from([(
        p,
        LocalRoute {
            communities: vec![(64512 << 16) | 7],
            ..Default::default()
        },
    )]));

    wait("Established", || async {
        let s = b.status().await.unwrap();
        s.peers[0].state == SessionState::Established && s.peers[0].prefixes_received == 1
    })
    .await;
    let r = b.routes().await.unwrap();
    assert_eq!(r.routes[0].prefix, "10.65.0.0/26");
    assert_eq!(r.routes[0].as_path, vec![64512]);
    assert_eq!(r.routes[0].communities, vec!["64512:7"]);
    let f = fb.recv().await.unwrap();
    assert_eq!((f.prefix, f.next_hops), (p, vec![lo()]));
    let sa = a.status().await.unwrap();
    assert_eq!(sa.peers[0].prefixes_advertised, 1);

    // withdrawal
    a.set_local_routes(BTreeMap::new());
    let f = tokio::time::timeout(Duration::from_secs(5), fb.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(f.next_hops.is_empty());

    // a change of export policy only does not reset the session
    let mut pa2 = pa.clone();
    pa2.export_learned = true;
    a.set_peers(vec![pa2]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.status().await.unwrap().peers[0].session_resets, 0);
    assert_eq!(
        b.status().await.unwrap().peers[0].state,
        SessionState::Established
    );

    // removing the peer sends a Cease that the other side records
    a.remove_peer(pa.key());
    wait("Cease seen", || async {
        let s = b.status().await.unwrap();
        s.peers[0].state != SessionState::Established
            && s.peers[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("Peer De-configured"))
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn wrong_as_is_refused_with_open_error() {
    let (a, _fa) = speaker(64512, "1.1.1.1");
    let (b, _fb) = speaker(65000, "2.2.2.2");
    let mut pa = PeerConfig::new(lo(), 65001, 64512); // b is really 65000
    pa.port = b.listen_addrs()[0].port();
    let mut pb = PeerConfig::new(lo(), 64512, 65000);
    pb.passive = true;
    a.set_peers(vec![pa]);
    b.set_peers(vec![pb]);
    wait("Bad peer AS", || async {
        let s = a.status().await.unwrap();
        s.peers[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Bad peer AS"))
    })
    .await;
    wait("b saw the NOTIFICATION", || async {
        let s = b.status().await.unwrap();
        s.peers[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Bad Peer AS"))
    })
    .await;
}

#[tokio::test]
async fn graceful_restart_keeps_routes_while_the_peer_restarts() {
    let (b, mut fb) = speaker(65000, "2.2.2.2");
    let mut pb = PeerConfig::new(lo(), 64512, 65000);
    pb.passive = true;
    b.set_peers(vec![pb]);
    let port = b.listen_addrs()[0].port();
    let p: Prefix = "10.65.0.0/26".parse().unwrap();
    let q: Prefix = "10.65.9.0/26".parse().unwrap();
    let start_a = |restarting: bool, routes: Vec<Prefix>| {
        let (a, fa) = Speaker::start(SpeakerConfig {
            node_name: "a".into(),
            router_id: "1.1.1.1".parse().unwrap(),
            local_as: 64512,
            listen: vec![],
            next_hop_v4: Some(lo()),
            next_hop_v6: None,
            restarting,
        })
        .unwrap();
        let mut pa = PeerConfig::new(lo(), 65000, 64512);
        pa.port = port;
        pa.connect_retry = Duration::from_millis(300);
        a.set_peers(vec![pa]);
        a.set_local_routes(
            routes
                .into_iter()
                .map(|r| (r, LocalRoute::default()))
                .collect(),
        );
        (a, fa)
    };
    let (a, _fa) = start_a(false, vec![p, q]);
    wait("both routes at b", || async {
        b.status().await.unwrap().peers[0].prefixes_received == 2
    })
    .await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), fb.recv()).await {}

    // a stops for a restart: the connection closes without NOTIFICATION
    a.shutdown_for_restart().await;
    wait("b sees the session go", || async {
        b.status().await.unwrap().peers[0].state != SessionState::Established
    })
    .await;
    // b keeps a's routes (no forwarding change) while a is away
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        fb.try_recv().is_err(),
        "no FIB change while the peer restarts"
    );
    assert_eq!(b.routes().await.unwrap().routes.len(), 2);

    // a comes back announcing only p: after its End-of-RIB, q goes and p never flapped
    let (a2, _fa2) = start_a(true, vec![p]);
    let f = tokio::time::timeout(Duration::from_secs(10), fb.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((f.prefix, f.next_hops.len()), (q, 0));
    assert!(fb.try_recv().is_err());
    let r = b.routes().await.unwrap();
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.routes[0].prefix, "10.65.0.0/26");
    a2.shutdown().await;
    b.shutdown().await;
}

/// Two sessions to one address (127.0.0.1) on two ports, to two speakers with different
/// ASNs; `a` only listens (passive), so both sessions come from connections `b` and `c`
/// open from ephemeral ports to `a`'s one listening port: each must reach its own session.
#[tokio::test]
async fn two_sessions_to_one_address_on_two_ports() {
    use brindle_bgp::types::PeerKey;
    let (a, _fa) = speaker(64512, "1.1.1.1");
    let (b, _fb) = speaker(65001, "2.2.2.2");
    let (c, _fc) = speaker(65002, "3.3.3.3");
    let a_port = a.listen_addrs()[0].port();
    let (b_port, c_port) = (b.listen_addrs()[0].port(), c.listen_addrs()[0].port());
    let mut to_b = PeerConfig::new(lo(), 65001, 64512);
    to_b.port = b_port;
    to_b.passive = true;
    let mut to_c = PeerConfig::new(lo(), 65002, 64512);
    to_c.port = c_port;
    to_c.passive = true;
    a.set_peers(vec![to_b.clone(), to_c.clone()]);
    // The speaker on the higher port dials first, alone: without the AS read from its
    // OPEN, its connection would go to the other session (the first by port), be
    // refused with Bad Peer AS, and never come up.
    let mut order = [
        (&b, 65001, "10.1.0.0/24", b_port),
        (&c, 65002, "10.2.0.0/24", c_port),
    ];
    order.sort_by_key(|o| std::cmp::Reverse(o.3));
    for (i, (s, asn, pfx, port)) in order.into_iter().enumerate() {
        let mut to_a = PeerConfig::new(lo(), 64512, asn);
        to_a.port = a_port;
        to_a.connect_retry = Duration::from_millis(300);
        s.set_peers(vec![to_a]);
        s.set_local_routes(BTreeMap::from([(
            pfx.parse().unwrap(),
            LocalRoute::default(),
        )]));
        if i == 0 {
            wait("the first session Established on its own", || async {
                a.status()
                    .await
                    .unwrap()
                    .peers
                    .iter()
                    .any(|p| p.peer_port == port && p.state == SessionState::Established)
            })
            .await;
        }
    }
    wait("both sessions Established with a route each", || async {
        let s = a.status().await.unwrap();
        s.peers.len() == 2
            && s.peers
                .iter()
                .all(|p| p.state == SessionState::Established && p.prefixes_accepted == 1)
    })
    .await;
    // no connection went to the wrong session (which would have refused its OPEN with
    // Bad Peer AS and left an error on one side or the other)
    for s in [&a, &b, &c] {
        for p in s.status().await.unwrap().peers {
            assert_eq!(p.last_error, None, "{p:?}");
            assert_eq!(p.session_resets, 0, "{p:?}");
        }
    }
    let st = a.status().await.unwrap();
    let by_port = |port: u16| st.peers.iter().find(|p| p.peer_port == port).unwrap();
    assert_eq!(by_port(b_port).as_number, 65001);
    assert_eq!(
        by_port(b_port).remote_router_id,
        Some("2.2.2.2".parse().unwrap())
    );
    assert_eq!(
        by_port(c_port).remote_router_id,
        Some("3.3.3.3".parse().unwrap())
    );
    let routes = a.routes().await.unwrap().routes;
    let from = |pfx: &str| {
        let r = routes.iter().find(|r| r.prefix == pfx).unwrap();
        (r.peer_address, r.peer_port, r.as_path.clone())
    };
    assert_eq!(from("10.1.0.0/24"), (Some(lo()), Some(b_port), vec![65001]));
    assert_eq!(from("10.2.0.0/24"), (Some(lo()), Some(c_port), vec![65002]));

    // removing one session leaves the other (and its route) alone
    a.remove_peer(PeerKey::new(lo(), c_port));
    wait("c's route gone", || async {
        a.routes().await.unwrap().routes.len() == 1
    })
    .await;
    let st = a.status().await.unwrap();
    assert_eq!(st.peers.len(), 1);
    assert_eq!(st.peers[0].peer_port, b_port);
    assert_eq!(st.peers[0].state, SessionState::Established);
    assert_eq!(st.peers[0].session_resets, 0);
    for s in [a, b, c] {
        s.shutdown().await;
    }
}
