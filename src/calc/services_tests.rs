use super::*;
use brindle_model::kubernetes::SliceEndpoint;

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nets(v: &[&str]) -> Vec<IpNetwork> {
    v.iter().map(|s| net(s)).collect()
}

fn config(cluster: &[&str], external: &[&str], lb: &[&str]) -> EffectiveBgpConfig {
    EffectiveBgpConfig {
        service_cluster_ips: nets(cluster),
        service_external_ips: nets(external),
        service_load_balancer_ips: nets(lb),
        ..Default::default()
    }
}

/// A Service: `cluster` IPs (families from them), `policy` ("Local", "Cluster", "").
fn svc(name: &str, ty: &str, policy: &str, cluster: &[&str]) -> Service {
    let cluster_ips: Vec<IpAddr> = cluster.iter().map(|s| ip(s)).collect();
    let mut ip_families: Vec<String> = Vec::new();
    for i in &cluster_ips {
        let f = if i.is_ipv4() { "IPv4" } else { "IPv6" }.to_string();
        if !ip_families.contains(&f) {
            ip_families.push(f);
        }
    }
    Service {
        namespace: "shop".into(),
        name: name.into(),
        service_type: ty.into(),
        cluster_ips,
        ip_families,
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        spec_load_balancer_ip: None,
        external_traffic_policy: match policy {
            "Local" => Some(TrafficPolicy::Local),
            "Cluster" => Some(TrafficPolicy::Cluster),
            _ => None,
        },
        internal_traffic_policy: TrafficPolicy::Cluster,
    }
}

/// An EndpointSlice of `service` with endpoints (address, node, ready).
fn slice(service: &str, name: &str, family: &str, eps: &[(&str, &str, bool)]) -> EndpointSlice {
    EndpointSlice {
        namespace: "shop".into(),
        name: name.into(),
        service_name: Some(service.into()),
        address_type: Some(family.into()),
        endpoints: eps
            .iter()
            .map(|(a, n, r)| SliceEndpoint {
                addresses: vec![ip(a)],
                ready: *r,
                node_name: Some(n.to_string().into()),
            })
            .collect(),
    }
}

struct World {
    cfg: EffectiveBgpConfig,
    labels: BTreeMap<String, String>,
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
}

impl World {
    fn new(cfg: EffectiveBgpConfig) -> World {
        World {
            cfg,
            labels: BTreeMap::new(),
            services: Vec::new(),
            slices: Vec::new(),
        }
    }

    fn svc(mut self, s: Service) -> World {
        self.services.push(Arc::new(s));
        self
    }

    fn slice(mut self, s: EndpointSlice) -> World {
        self.slices.push(Arc::new(s));
        self
    }

    fn on(&self, node: &str) -> ServiceRoutes {
        service_routes(&Inputs {
            config: &self.cfg,
            node_name: node,
            node_labels: &self.labels,
            services: &self.services,
            endpoint_slices: &self.slices,
        })
    }

    /// The advertised prefixes on `node`, as strings.
    fn prefixes(&self, node: &str) -> Vec<String> {
        self.on(node)
            .advertise
            .iter()
            .map(|r| r.prefix.to_string())
            .collect()
    }
}

#[test]
fn ranges_from_every_node_single_addresses_left_to_the_services() {
    let w = World::new(config(
        &["10.96.0.0/12", "fd00:96::/108", "10.100.0.1/32"],
        &[
            "192.0.2.0/24",
            "192.0.2.200/32",
            "2001:db8:e::/64",
            "2001:db8:e::9/128",
        ],
        &["198.51.100.0/24", "198.51.100.9/32", "2001:db8:1b::/64"],
    ));
    let r = w.on("node-1");
    let got: Vec<(String, Vec<RouteSource>)> = r
        .advertise
        .iter()
        .map(|a| (a.prefix.to_string(), a.sources.clone()))
        .collect();
    let range = |f| vec![RouteSource::Range { field: f }];
    assert_eq!(
        got,
        vec![
            ("10.96.0.0/12".into(), range(RangeField::ClusterIps)),
            // a single address in serviceClusterIPs is a range like any other
            ("10.100.0.1/32".into(), range(RangeField::ClusterIps)),
            ("192.0.2.0/24".into(), range(RangeField::ExternalIps)),
            ("198.51.100.0/24".into(), range(RangeField::LoadBalancerIps)),
            ("2001:db8:e::/64".into(), range(RangeField::ExternalIps)),
            (
                "2001:db8:1b::/64".into(),
                range(RangeField::LoadBalancerIps)
            ),
            ("fd00:96::/108".into(), range(RangeField::ClusterIps)),
        ]
    );
    assert_eq!(w.prefixes("node-2"), w.prefixes("node-1"), "every node");
    let reject: Vec<String> = r.kernel_reject.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        reject,
        [
            "10.96.0.0/12",
            "10.100.0.1/32",
            "192.0.2.0/24",
            "198.51.100.0/24",
            "2001:db8:e::/64",
            "2001:db8:1b::/64",
            "fd00:96::/108"
        ]
    );
    assert!(!r.excluded);
}

#[test]
fn aggregation_disabled_advertises_no_load_balancer_range() {
    let mut cfg = config(&[], &[], &["198.51.100.0/24"]);
    cfg.service_load_balancer_aggregation = ServiceLoadBalancerAggregation::Disabled;
    let w = World::new(cfg);
    let r = w.on("node-1");
    assert!(r.advertise.is_empty());
    assert!(r.kernel_reject.is_empty());
}

/// The office story: a Local service with a cluster IP and an external IP, one
/// endpoint on node-2.
fn local_world() -> World {
    let mut s = svc("web", "ClusterIP", "Local", &["10.96.0.10"]);
    s.external_ips = vec![ip("192.0.2.10"), ip("203.0.113.1")];
    World::new(config(&["10.96.0.0/12"], &["192.0.2.0/24"], &[]))
        .svc(s)
        .slice(slice(
            "web",
            "web-abc",
            "IPv4",
            &[
                ("10.65.1.5", "node-2", true),
                ("10.65.0.5", "node-1", false),
            ],
        ))
}

#[test]
fn local_policy_only_from_nodes_with_a_ready_local_endpoint() {
    let w = local_world();
    assert_eq!(
        w.prefixes("node-2"),
        [
            "10.96.0.0/12",
            "10.96.0.10/32",
            "192.0.2.0/24",
            "192.0.2.10/32"
        ],
        "203.0.113.1 is in no serviceExternalIPs range: not advertised"
    );
    assert_eq!(
        w.prefixes("node-1"),
        ["10.96.0.0/12", "192.0.2.0/24"],
        "node-1's endpoint is not ready"
    );
    assert_eq!(w.prefixes("node-3"), ["10.96.0.0/12", "192.0.2.0/24"]);
    let r = w.on("node-2");
    let ext = r
        .advertise
        .iter()
        .find(|a| a.prefix == net("192.0.2.10/32"))
        .unwrap();
    assert_eq!(
        ext.sources,
        vec![RouteSource::Service {
            service: "shop/web".into(),
            address: AddressKind::ExternalIp,
            policy: "Local".into(),
            basis: Basis::LocalEndpoints {
                endpoints: vec![EndpointRef {
                    slice: "web-abc".into(),
                    addresses: vec![ip("10.65.1.5")],
                    node: Some("node-2".into()),
                }],
                more: 0,
            },
        }]
    );
}

#[test]
fn readiness_decides_and_any_slice_of_the_service_counts() {
    // the endpoint moved: ready on node-1, gone from node-2
    let w = World::new(config(&["10.96.0.0/12"], &[], &[]))
        .svc(svc("web", "ClusterIP", "Local", &["10.96.0.10"]))
        .slice(slice(
            "web",
            "web-a",
            "IPv4",
            &[("10.65.1.5", "node-2", false)],
        ))
        .slice(slice(
            "web",
            "web-b",
            "IPv4",
            &[("10.65.0.5", "node-1", true)],
        ));
    assert_eq!(w.prefixes("node-1"), ["10.96.0.0/12", "10.96.0.10/32"]);
    assert_eq!(w.prefixes("node-2"), ["10.96.0.0/12"]);
    // a slice of another namespace, or of another service, does not count
    let mut other_ns = slice("web", "web-c", "IPv4", &[("10.65.1.6", "node-2", true)]);
    other_ns.namespace = "other".into();
    let w = w.slice(other_ns).slice(slice(
        "api",
        "api-a",
        "IPv4",
        &[("10.65.1.7", "node-2", true)],
    ));
    assert_eq!(w.prefixes("node-2"), ["10.96.0.0/12"]);
}

#[test]
fn cluster_ips_only_when_service_cluster_ips_is_configured_but_not_restricted_by_it() {
    let mut s = svc("web", "ClusterIP", "Local", &["10.96.0.10"]);
    s.external_ips = vec![ip("192.0.2.10")];
    let eps = slice("web", "web-a", "IPv4", &[("10.65.1.5", "node-2", true)]);
    let w = World::new(config(&[], &["192.0.2.0/24"], &[]))
        .svc(s.clone())
        .slice(eps.clone());
    assert_eq!(w.prefixes("node-2"), ["192.0.2.0/24", "192.0.2.10/32"]);
    // Calico advertises every cluster IP once any serviceClusterIPs is set, inside it
    // or not
    let w = World::new(config(&["10.200.0.0/16"], &[], &[]))
        .svc(s)
        .slice(eps);
    assert_eq!(w.prefixes("node-2"), ["10.96.0.10/32", "10.200.0.0/16"]);
}

#[test]
fn load_balancer_ingress_ips_inside_the_allow_list() {
    let mut s = svc("lb", "LoadBalancer", "Local", &["10.96.0.20"]);
    s.load_balancer_ips = vec![ip("198.51.100.7"), ip("203.0.113.7")];
    // spec.loadBalancerIP is not advertised (only the status is)
    s.spec_load_balancer_ip = Some(ip("198.51.100.8"));
    let w = World::new(config(&[], &[], &["198.51.100.0/24"]))
        .svc(s)
        .slice(slice(
            "lb",
            "lb-a",
            "IPv4",
            &[("10.65.1.5", "node-2", true)],
        ));
    assert_eq!(w.prefixes("node-2"), ["198.51.100.0/24", "198.51.100.7/32"]);
    assert_eq!(w.prefixes("node-1"), ["198.51.100.0/24"]);
}

#[test]
fn cluster_policy_is_covered_by_the_ranges_when_aggregated() {
    let mut s = svc("web", "LoadBalancer", "Cluster", &["10.96.0.10"]);
    s.external_ips = vec![ip("192.0.2.10")];
    s.load_balancer_ips = vec![ip("198.51.100.7")];
    let w = World::new(config(
        &["10.96.0.0/12"],
        &["192.0.2.0/24"],
        &["198.51.100.0/24"],
    ))
    .svc(s)
    .slice(slice(
        "web",
        "web-a",
        "IPv4",
        &[("10.65.1.5", "node-2", true)],
    ));
    let only_ranges = ["10.96.0.0/12", "192.0.2.0/24", "198.51.100.0/24"];
    assert_eq!(w.prefixes("node-2"), only_ranges);
    assert_eq!(w.prefixes("node-1"), only_ranges);
}

#[test]
fn cluster_policy_with_a_single_address_entry_is_advertised_from_every_node() {
    // an external IP configured as a /32: every address of the service, from every node
    let mut s = svc("web", "ClusterIP", "Cluster", &["10.96.0.10"]);
    s.external_ips = vec![ip("192.0.2.10")];
    let w = World::new(config(&["10.96.0.0/12"], &["192.0.2.10/32"], &[]))
        .svc(s.clone())
        .slice(slice(
            "web",
            "web-a",
            "IPv4",
            &[("10.65.1.5", "node-2", false)],
        ));
    for node in ["node-1", "node-2"] {
        assert_eq!(
            w.prefixes(node),
            ["10.96.0.0/12", "10.96.0.10/32", "192.0.2.10/32"],
            "{node}: no ready endpoint needed"
        );
    }
    let r = w.on("node-1");
    assert!(matches!(
        &r.advertise[2].sources[0],
        RouteSource::Service {
            basis: Basis::SingleAddress {
                field: RangeField::ExternalIps
            },
            ..
        }
    ));
    // the /32 is not a range: no kernel reject for it
    assert_eq!(r.kernel_reject, nets(&["10.96.0.0/12"]));
    // ... but the service still needs an EndpointSlice (Calico's setRouteForSvc)
    let w = World::new(config(&["10.96.0.0/12"], &["192.0.2.10/32"], &[])).svc(s);
    assert_eq!(w.prefixes("node-1"), ["10.96.0.0/12"]);
}

#[test]
fn cluster_load_balancer_single_address_from_spec_or_status() {
    for (spec, status) in [(true, false), (false, true)] {
        let mut s = svc("lb", "LoadBalancer", "Cluster", &["fd00:96::20"]);
        if spec {
            s.spec_load_balancer_ip = Some(ip("2001:db8:1b::7"));
        }
        if status {
            s.load_balancer_ips = vec![ip("2001:db8:1b::7")];
        }
        let w = World::new(config(&[], &[], &["2001:db8:1b::7/128"]))
            .svc(s)
            .slice(slice("lb", "lb-a", "IPv6", &[]));
        // advertised as soon as the address is in the status
        let want: &[&str] = if status { &["2001:db8:1b::7/128"] } else { &[] };
        assert_eq!(w.prefixes("node-1"), want, "spec {spec} status {status}");
    }
    // only for type LoadBalancer
    let mut s = svc("np", "NodePort", "Cluster", &["10.96.0.30"]);
    s.load_balancer_ips = vec![ip("198.51.100.9")];
    let w = World::new(config(&[], &[], &["198.51.100.9/32"]))
        .svc(s)
        .slice(slice(
            "np",
            "np-a",
            "IPv4",
            &[("10.65.1.5", "node-2", true)],
        ));
    assert!(w.prefixes("node-1").is_empty());
}

#[test]
fn unset_policy_gets_no_single_address_shortcut() {
    // externalTrafficPolicy unset (a ClusterIP service): neither Cluster nor Local
    let mut s = svc("web", "ClusterIP", "", &["10.96.0.10"]);
    s.external_ips = vec![ip("192.0.2.10")];
    let eps = slice("web", "web-a", "IPv4", &[("10.65.1.5", "node-2", true)]);
    let w = World::new(config(&[], &["192.0.2.10/32"], &[]))
        .svc(s.clone())
        .slice(eps.clone());
    assert!(w.prefixes("node-2").is_empty());
    // with aggregation disabled it is advertised like Cluster: a ready endpoint anywhere
    let mut cfg = config(&[], &["192.0.2.10/32"], &[]);
    cfg.service_load_balancer_aggregation = ServiceLoadBalancerAggregation::Disabled;
    let w = World::new(cfg).svc(s).slice(eps);
    assert_eq!(w.prefixes("node-1"), ["192.0.2.10/32"]);
    match &w.on("node-1").advertise[0].sources[0] {
        RouteSource::Service { policy, basis, .. } => {
            assert_eq!(policy, "");
            assert!(matches!(basis, Basis::ReadyEndpoints { .. }), "{basis:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn aggregation_disabled_cluster_policy_needs_a_ready_endpoint_anywhere() {
    let mut cfg = config(&[], &[], &["198.51.100.0/24"]);
    cfg.service_load_balancer_aggregation = ServiceLoadBalancerAggregation::Disabled;
    let mut s = svc("lb", "LoadBalancer", "Cluster", &["10.96.0.20"]);
    s.load_balancer_ips = vec![ip("198.51.100.7")];
    let w = World::new(cfg.clone()).svc(s.clone()).slice(slice(
        "lb",
        "lb-a",
        "IPv4",
        &[("10.65.1.5", "node-2", true)],
    ));
    assert_eq!(w.prefixes("node-1"), ["198.51.100.7/32"]);
    assert_eq!(w.prefixes("node-2"), ["198.51.100.7/32"]);
    let w = World::new(cfg).svc(s).slice(slice(
        "lb",
        "lb-a",
        "IPv4",
        &[("10.65.1.5", "node-2", false)],
    ));
    assert!(w.prefixes("node-1").is_empty());
}

#[test]
fn only_cluster_ip_node_port_and_load_balancer_services_with_a_cluster_ip() {
    let eps = |n: &str| {
        slice(
            n,
            &format!("{n}-a"),
            "IPv4",
            &[("10.65.1.5", "node-2", true)],
        )
    };
    let w = World::new(config(&["10.96.0.0/12"], &[], &[]))
        .svc(svc("en", "ExternalName", "Local", &["10.96.0.40"]))
        .svc(svc("headless", "ClusterIP", "Local", &[]))
        .svc(svc("np", "NodePort", "Local", &["10.96.0.41"]))
        .slice(eps("en"))
        .slice(eps("headless"))
        .slice(eps("np"));
    assert_eq!(w.prefixes("node-2"), ["10.96.0.0/12", "10.96.0.41/32"]);
}

#[test]
fn slices_must_match_an_ip_family_of_the_service() {
    let cfg = config(&["10.96.0.0/12", "fd00:96::/108"], &[], &[]);
    // IPv4 service, IPv6 endpoints: not advertised
    let w = World::new(cfg.clone())
        .svc(svc("v4", "ClusterIP", "Local", &["10.96.0.10"]))
        .slice(slice(
            "v4",
            "v4-a",
            "IPv6",
            &[("fd00:65::5", "node-2", true)],
        ));
    assert_eq!(w.prefixes("node-2"), ["10.96.0.0/12", "fd00:96::/108"]);
    // IPv6 service, IPv6 endpoints: the /128
    let w = World::new(cfg.clone())
        .svc(svc("v6", "ClusterIP", "Local", &["fd00:96::10"]))
        .slice(slice(
            "v6",
            "v6-a",
            "IPv6",
            &[("fd00:65::5", "node-2", true)],
        ));
    assert_eq!(
        w.prefixes("node-2"),
        ["10.96.0.0/12", "fd00:96::/108", "fd00:96::10/128"]
    );
    // dual stack with only the IPv4 slice: both cluster IPs (Calico advertises every
    // route of the service)
    let w = World::new(cfg)
        .svc(svc(
            "ds",
            "ClusterIP",
            "Local",
            &["10.96.0.12", "fd00:96::12"],
        ))
        .slice(slice(
            "ds",
            "ds-a",
            "IPv4",
            &[("10.65.1.5", "node-2", true)],
        ));
    assert_eq!(
        w.prefixes("node-2"),
        [
            "10.96.0.0/12",
            "10.96.0.12/32",
            "fd00:96::/108",
            "fd00:96::12/128"
        ]
    );
    // a slice without addressType (nothing to match) counts for nothing
    let mut s = slice("ds", "ds-b", "IPv4", &[("10.65.1.6", "node-1", true)]);
    s.address_type = None;
    let w = World::new(config(&["10.96.0.0/12"], &[], &[]))
        .svc(svc("ds", "ClusterIP", "Local", &["10.96.0.12"]))
        .slice(s);
    assert_eq!(w.prefixes("node-1"), ["10.96.0.0/12"]);
}

#[test]
fn excluded_nodes_advertise_nothing_but_still_reject_the_ranges() {
    let mut w = local_world();
    w.labels.insert(EXCLUDE_FROM_LB_LABEL.into(), "true".into());
    let r = w.on("node-2");
    assert!(r.advertise.is_empty(), "{:?}", r.advertise);
    assert!(r.excluded);
    assert_eq!(r.kernel_reject, nets(&["10.96.0.0/12", "192.0.2.0/24"]));
    // only "true" excludes
    w.labels.insert(EXCLUDE_FROM_LB_LABEL.into(), "True".into());
    assert_eq!(w.on("node-2").advertise.len(), 4);
}

#[test]
fn one_route_for_every_reason_it_has() {
    // two services share an external IP, and the cluster range is also a /32 that is
    // a service's cluster IP
    let mut a = svc("a", "ClusterIP", "Local", &["10.96.0.10"]);
    a.external_ips = vec![ip("192.0.2.10")];
    let mut b = svc("b", "ClusterIP", "Local", &["10.96.0.11"]);
    b.external_ips = vec![ip("192.0.2.10")];
    let w = World::new(config(&["10.96.0.10/32"], &["192.0.2.0/24"], &[]))
        .svc(a)
        .svc(b)
        .slice(slice("a", "a-1", "IPv4", &[("10.65.1.5", "node-2", true)]))
        .slice(slice("b", "b-1", "IPv4", &[("10.65.1.6", "node-2", true)]));
    let r = w.on("node-2");
    let find = |p: &str| {
        r.advertise
            .iter()
            .find(|x| x.prefix == net(p))
            .unwrap()
            .sources
            .clone()
    };
    let ext = find("192.0.2.10/32");
    assert_eq!(ext.len(), 2);
    assert!(matches!(&ext[0], RouteSource::Service { service, .. } if service == "shop/a"));
    assert!(matches!(&ext[1], RouteSource::Service { service, .. } if service == "shop/b"));
    let cip = find("10.96.0.10/32");
    assert_eq!(cip.len(), 2, "{cip:?}");
    assert_eq!(
        cip[0],
        RouteSource::Range {
            field: RangeField::ClusterIps
        }
    );
    let prefixes: BTreeSet<IpNetwork> = r.advertise.iter().map(|x| x.prefix).collect();
    assert_eq!(prefixes.len(), r.advertise.len(), "one entry per prefix");
}

#[test]
fn no_slices_no_routes_and_long_endpoint_lists_are_cut() {
    let w = World::new(config(&["10.96.0.0/12"], &[], &[])).svc(svc(
        "web",
        "ClusterIP",
        "Local",
        &["10.96.0.10"],
    ));
    assert_eq!(w.prefixes("node-2"), ["10.96.0.0/12"]);
    let many: Vec<(String, &str, bool)> = (0..10)
        .map(|i| (format!("10.65.1.{i}"), "node-2", true))
        .collect();
    let many: Vec<(&str, &str, bool)> = many.iter().map(|(a, n, r)| (a.as_str(), *n, *r)).collect();
    let w = w.slice(slice("web", "web-a", "IPv4", &many));
    let r = w.on("node-2");
    match &r.advertise[1].sources[0] {
        RouteSource::Service {
            basis: Basis::LocalEndpoints { endpoints, more },
            ..
        } => {
            assert_eq!(endpoints.len(), MAX_ENDPOINTS_SHOWN);
            assert_eq!(*more, 10 - MAX_ENDPOINTS_SHOWN);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn status_document_round_trips() {
    let r = local_world().on("node-2");
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""source":"service""#), "{json}");
    assert!(json.contains(r#""kind":"localEndpoints""#), "{json}");
    let back: ServiceRoutes = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}
