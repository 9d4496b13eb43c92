//! The Kubernetes datastore backend against the API stand-in, in-process (no network
//! namespace: the stand-in listens on 127.0.0.1 and nothing else is contacted): BGP
//! passwords from Secrets, and objects that do not decode.

use brindle::datastore::kubernetes;
use brindle::datastore::Event;
use brindle_kube_standin::{Config, StandIn};
use brindle_model::{Kind, Resource};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn standin() -> StandIn {
    let api = StandIn::start(Config::default()).unwrap();
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/crds");
    let mut files: Vec<_> = std::fs::read_dir(&crds)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        api.load_file(&f).unwrap();
    }
    api
}

/// Events until every kind in `kinds` is in sync (or 20 s).
async fn until_in_sync(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    kinds: &[Kind],
) -> Vec<Event> {
    let mut seen = Vec::new();
    let mut synced = std::collections::BTreeSet::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while synced.len() < kinds.len() {
        let e = tokio::time::timeout_at(end, rx.recv())
            .await
            .expect("in sync within 20 s")
            .expect("datastore running");
        if let Event::InSync(k) = &e {
            synced.insert(*k);
        }
        seen.push(e);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgp_passwords_come_from_secrets_and_bad_pods_are_skipped() {
    let api = standin();
    api.create(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bgp-secrets", "namespace": "kube-system"},
        "data": {"tor": "czNjcjN0Cg=="}}))
        .unwrap();
    api.create(
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
        "metadata": {"name": "tor"},
        "spec": {"peerIP": "10.0.0.254", "asNumber": 65000,
                 "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "tor"}}}}),
    )
    .unwrap();
    api.create(
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
        "metadata": {"name": "missing"},
        "spec": {"peerIP": "10.0.0.253", "asNumber": 65000,
                 "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "nope"}}}}),
    )
    .unwrap();
    api.create(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "good", "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.65.0.5"}]}}))
        .unwrap();
    api.create(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"nodeName": "n1", "hostNetwork": "yes", "containers": [{"name": "c"}]}}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    std::env::set_var("POD_NAMESPACE", "kube-system");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let kinds = [Kind::BgpPeer, Kind::Pod];
    let _writer = kubernetes::start(Some(kubeconfig), "n1".into(), &kinds, tx)
        .await
        .unwrap();
    let events = until_in_sync(&mut rx, &kinds).await;
    let peer = |name: &str| {
        events.iter().find_map(|e| match e {
            Event::Apply(o) => match &o.resource {
                Resource::BgpPeer(p) if o.raw.name == name => Some((p.clone(), o.warnings.clone())),
                _ => None,
            },
            _ => None,
        })
    };
    let (tor, _) = peer("tor").expect("BGPPeer tor applied");
    assert_eq!(
        tor.password.as_deref(),
        Some("s3cr3t"),
        "password from the Secret"
    );
    let (missing, warnings) = peer("missing").expect("BGPPeer missing applied");
    assert_eq!(missing.password, None);
    assert!(
        warnings.iter().any(|w| w.contains("has no key \"nope\"")),
        "{warnings:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Apply(o) if o.label == "Pod/default/good")));
    let bad = events
        .iter()
        .find_map(|e| match e {
            Event::Invalid { label, error, .. } if label == "Pod/default/bad" => {
                Some(error.clone())
            }
            _ => None,
        })
        .expect("the bad pod is reported, with its name");
    assert!(
        bad.contains("hostNetwork") || bad.contains("boolean"),
        "{bad}"
    );
}
