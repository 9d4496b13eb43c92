//! Writes the seed corpora (fuzz/corpus/<target>/) from the codec's own encoders, so the
//! fuzzer starts from valid messages of every type. The corpus directories are
//! git-ignored; run this before the first `cargo fuzz run`:
//!
//!     cd fuzz && cargo run --example gen_corpus
//!
//! Every seed is also run through its target's checks, so a seed that already fails shows
//! up here rather than as a crash at fuzzer start-up.

use brindle_bgp::codec::{
    encode_announce, encode_end_of_rib, encode_keepalive, encode_notification, encode_open,
    encode_route_refresh, encode_withdraw, Capabilities, EncodeContext, GracefulRestart, Open,
    HEADER_LEN, MAX_LEN,
};
use brindle_bgp::types::{Afi, AsSegment, Notification, Origin, PathAttrs, Prefix, SegmentKind};
use brindle_bgp_fuzz::{fuzz_decode, fuzz_session, peer_open, PEER_AS};
use std::path::Path;

fn open(asn: u32, four: bool) -> Vec<u8> {
    encode_open(&Open {
        version: 4,
        my_as: if asn > 0xffff { 23456 } else { asn as u16 },
        hold_time: 90,
        router_id: "10.0.0.2".parse().unwrap(),
        caps: Capabilities {
            afis: vec![Afi::Ipv4, Afi::Ipv6],
            four_octet_as: four.then_some(asn),
            route_refresh: true,
            enhanced_route_refresh: true,
            extended_message: true,
            graceful_restart: Some(GracefulRestart {
                restart_state: true,
                notification: false,
                time: 120,
                afis: vec![(Afi::Ipv4, true), (Afi::Ipv6, false)],
            }),
            add_path: vec![(Afi::Ipv4, false, true), (Afi::Ipv6, true, true)],
            hostname: None,
            other: vec![],
        },
    })
}

fn all_attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Egp),
        as_path: vec![
            AsSegment {
                kind: SegmentKind::Sequence,
                asns: vec![PEER_AS, 4_200_000_001, 64512],
            },
            AsSegment {
                kind: SegmentKind::Set,
                asns: vec![65100, 65101],
            },
        ],
        next_hop: Some("10.0.0.2".parse().unwrap()),
        next_hop_local: None,
        med: Some(10),
        local_pref: Some(100),
        atomic_aggregate: true,
        aggregator: Some((4_200_000_001, "10.0.0.9".parse().unwrap())),
        communities: vec![(65000 << 16) | 100, 0xffff_ff01],
        large_communities: vec![(4_200_000_001, 1, 2)],
        ext_communities: vec![[0, 2, 0xfd, 0xe8, 0, 0, 0, 1]],
        originator_id: Some("10.0.0.7".parse().unwrap()),
        cluster_list: vec!["10.0.0.8".parse().unwrap(), "10.0.0.9".parse().unwrap()],
        unknown: vec![(0xe0, 99, vec![1, 2, 3, 4])],
    }
}

fn prefixes(v: &[&str]) -> Vec<Prefix> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let v4 = prefixes(&["10.65.0.0/26", "10.96.0.0/12", "192.0.2.1/32", "0.0.0.0/0"]);
    let v6 = prefixes(&["fd00:65::/122", "2001:db8::/32", "::/0"]);
    let mut v6attrs = all_attrs();
    v6attrs.next_hop = Some("fd00::2".parse().unwrap());
    v6attrs.next_hop_local = Some("fe80::2".parse().unwrap());
    let mut out = vec![
        ("open_asn4", open(PEER_AS, true)),
        ("open_asn4_large", open(4_200_000_001, true)),
        ("open_asn2", open(PEER_AS, false)),
        ("keepalive", encode_keepalive()),
        (
            "notification_shutdown",
            encode_notification(&Notification::new(6, 2, b"\x05maint".to_vec())),
        ),
        (
            "notification_open_error",
            encode_notification(&Notification::new(2, 2, vec![0xfd, 0xe8])),
        ),
        ("route_refresh_v4", encode_route_refresh(Afi::Ipv4)),
        ("route_refresh_v6", encode_route_refresh(Afi::Ipv6)),
        ("eor_v4", encode_end_of_rib(Afi::Ipv4)),
        ("eor_v6", encode_end_of_rib(Afi::Ipv6)),
    ];
    // forms our encoders never produce
    out.push((
        "update_v4_mp_reach",
        hex("ffffffffffffffffffffffffffffffff 003b 02 0000 0024
             800e0d 0001 01 04 0a000002 00 180a0000
             40010100 400206 02010000fde8 c02304 0000fde8"),
    ));
    out.push((
        "update_v4_mp_reach_v6_next_hop",
        hex("ffffffffffffffffffffffffffffffff 0040 02 0000 0029
             800e19 0001 01 10 fd000000000000000000000000000002 00 180a0000
             40010100 400206 02010000fde8"),
    ));
    out.push((
        "update_nlri_and_v6_mp_reach",
        hex("ffffffffffffffffffffffffffffffff 004c 02 0000 0031
             800e1a 0002 01 10 fd000000000000000000000000000002 00 2020010db8
             40010100 400206 02010000fde8 400304 0a000002 180a0000"),
    ));
    out.push((
        "update_asn2_as4_path",
        hex("ffffffffffffffffffffffffffffffff 0036 02 0000 001b
             40010100 400204 0201fde8 400304 0a000002 c01106 0201 00002fe8 180a0000"),
    ));
    for asn4 in [true, false] {
        let ctx = EncodeContext {
            asn4,
            max_len: MAX_LEN,
        };
        let tag = if asn4 { "asn4" } else { "asn2" };
        let name = |s: &str| -> &'static str { Box::leak(format!("{s}_{tag}").into_boxed_str()) };
        out.push((
            name("update_v4_all_attrs"),
            encode_announce(&ctx, &all_attrs(), &v4).remove(0),
        ));
        out.push((
            name("update_v6_mp_reach"),
            encode_announce(&ctx, &v6attrs, &v6).remove(0),
        ));
        out.push((
            name("withdraw_v4"),
            encode_withdraw(&ctx, Afi::Ipv4, &v4).remove(0),
        ));
        out.push((
            name("withdraw_v6_mp_unreach"),
            encode_withdraw(&ctx, Afi::Ipv6, &v6).remove(0),
        ));
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let msgs = messages();
    let decode = root.join("decode");
    let session = root.join("session");
    let mut stream = Vec::new();
    for (name, m) in &msgs {
        // the message as a stream
        write(&decode, name, m);
        fuzz_decode(m);
        // the body behind the header the target prepends (type = first byte % 5 + 1)
        let mut b = vec![m[18] - 1];
        b.extend_from_slice(&m[HEADER_LEN..]);
        write(&decode, &format!("body_{name}"), &b);
        fuzz_decode(&b);
        if !name.starts_with("open") {
            stream.extend_from_slice(m);
        }
    }
    write(&decode, "stream_all", &stream);
    fuzz_decode(&stream);

    // session: opts, k, k split records, then the peer's bytes once Established
    let established: Vec<&(&str, Vec<u8>)> = msgs
        .iter()
        .filter(|(n, _)| !n.starts_with("open") && !n.starts_with("notification"))
        .collect();
    for opts in [0u8, 1, 2, 4, 0x10, 0x20] {
        // a 2-octet peer (opts bit 0) gets the 2-octet encodings
        let ok = |n: &str| {
            !(n.ends_with("asn4") && opts & 1 == 1 || n.ends_with("asn2") && opts & 1 == 0)
        };
        let mut s = vec![opts, 0];
        for (n, m) in &established {
            if ok(n) {
                s.extend_from_slice(m);
            }
        }
        write(&session, &format!("all_opts{opts:02x}"), &s);
        fuzz_session(&s);
        for (n, m) in &established {
            if ok(n) {
                // three cuts: inside the header, inside the body, at the end; 10 s steps
                let mut s = vec![opts, 3, 0, 5, 20, 0, 23, 20, 0xff, 0xff, 20];
                s.extend_from_slice(m);
                write(&session, &format!("{n}_opts{opts:02x}"), &s);
                fuzz_session(&s);
            }
        }
    }
    // peer closes with a NOTIFICATION; peer sends a second OPEN (FSM error)
    for (n, m) in msgs
        .iter()
        .filter(|(n, _)| n.starts_with("notification") || *n == "open_asn4")
    {
        let mut s = vec![0u8, 0];
        s.extend_from_slice(&encode_keepalive());
        s.extend_from_slice(m);
        write(&session, &format!("then_{n}"), &s);
        fuzz_session(&s);
    }
    // the peer goes silent past the hold time
    let s = vec![0u8, 2, 0, 0, 200, 0, 0, 200];
    write(&session, "hold_expiry", &s);
    fuzz_session(&s);
    let _ = peer_open(0);
    println!(
        "wrote {} decode and {} session seeds under {}",
        std::fs::read_dir(&decode).unwrap().count(),
        std::fs::read_dir(&session).unwrap().count(),
        root.display()
    );
}
