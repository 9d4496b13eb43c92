//! The stand-in as kube-rs sees it: typed and dynamic APIs, `kube::runtime::watcher`,
//! 409/410/401, outages, the control socket.

use std::time::Duration;

use brindle_kube_standin::{control, Config, PatchType, StandIn};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::{json, Value};

const STEP: Duration = Duration::from_secs(8);

fn standin() -> StandIn {
    StandIn::start(Config {
        watch_timeout: Duration::from_secs(2),
        bookmark_interval: Duration::from_millis(300),
        ..Config::default()
    })
    .expect("stand-in starts")
}

async fn client_for(yaml: &str) -> kube::Client {
    let kc = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig loads");
    kube::Client::try_from(cfg).expect("client builds")
}

async fn client(s: &StandIn) -> kube::Client {
    client_for(&s.kubeconfig_yaml()).await
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

type WEvent<K> = Result<Event<K>, watcher::Error>;

/// A watcher polled by a task of its own (a watcher only requests while polled), its
/// events forwarded here.
struct Watch<K>(tokio::sync::mpsc::UnboundedReceiver<WEvent<K>>);

fn spawn_watch<K, S>(stream: S) -> Watch<K>
where
    K: Send + 'static,
    S: Stream<Item = WEvent<K>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(e) = stream.next().await {
            if tx.send(e).is_err() {
                return;
            }
        }
    });
    Watch(rx)
}

/// The next watcher event, within `STEP`.
async fn next<K>(w: &mut Watch<K>) -> WEvent<K> {
    tokio::time::timeout(STEP, w.0.recv())
        .await
        .expect("a watcher event in time")
        .expect("the watcher stream goes on")
}

/// Events until one satisfies `stop` (included), within `STEP`.
async fn until<K, F>(w: &mut Watch<K>, mut stop: F) -> Vec<WEvent<K>>
where
    F: FnMut(&WEvent<K>) -> bool,
{
    let deadline = tokio::time::Instant::now() + STEP;
    let mut out = Vec::new();
    loop {
        let e = tokio::time::timeout_at(deadline, w.0.recv())
            .await
            .expect("the awaited watcher event in time")
            .expect("the watcher stream goes on");
        let done = stop(&e);
        out.push(e);
        if done {
            return out;
        }
    }
}

fn name_of<K: kube::Resource>(k: &K) -> String {
    k.meta().name.clone().unwrap_or_default()
}

fn api_status(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn watcher_lists_then_follows_changes_across_rewatches() {
    let s = standin();
    s.create(node("n1")).unwrap();
    s.create(node("n2")).unwrap();
    let nodes: Api<Node> = Api::all(client(&s).await);
    let mut w = spawn_watch(watcher::watcher(nodes, watcher::Config::default()));

    assert!(matches!(next(&mut w).await, Ok(Event::Init)));
    match next(&mut w).await {
        Ok(Event::InitApply(n)) => assert_eq!(name_of(&n), "n1"),
        other => panic!("{other:?}"),
    }
    match next(&mut w).await {
        Ok(Event::InitApply(n)) => assert_eq!(name_of(&n), "n2"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(next(&mut w).await, Ok(Event::InitDone)));
    assert!(s.wait_for_watches(1, STEP).await);

    s.patch(
        "v1",
        "Node",
        None,
        "n1",
        PatchType::Merge,
        &json!({"metadata": {"labels": {"a": "b"}}}),
    )
    .unwrap();
    match next(&mut w).await {
        Ok(Event::Apply(n)) => {
            assert_eq!(name_of(&n), "n1");
            assert_eq!(n.metadata.labels.unwrap()["a"], "b");
        }
        other => panic!("{other:?}"),
    }

    // Past the 2 s server-side watch timeout: the watcher re-watches from its last
    // resourceVersion (kept fresh by bookmarks) without relisting.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.delete("v1", "Node", None, "n2").unwrap();
    match next(&mut w).await {
        Ok(Event::Delete(n)) => assert_eq!(name_of(&n), "n2"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.request_count_for("list", "nodes"), 1);
    assert!(s.request_count_for("watch", "nodes") >= 2);
}

#[tokio::test]
async fn label_selected_watch_sees_transitions_as_added_and_deleted() {
    let s = standin();
    s.create(node("n1")).unwrap();
    let nodes: Api<Node> = Api::all(client(&s).await);
    let cfg = watcher::Config::default().labels("role=edge");
    let mut w = spawn_watch(watcher::watcher(nodes, cfg));
    let ev = until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert_eq!(ev.len(), 2, "Init, InitDone: nothing matches yet");
    let label = |v: Value| json!({"metadata": {"labels": {"role": v}}});
    s.patch(
        "v1",
        "Node",
        None,
        "n1",
        PatchType::Merge,
        &label(json!("edge")),
    )
    .unwrap();
    assert!(matches!(next(&mut w).await, Ok(Event::Apply(n)) if name_of(&n) == "n1"));
    s.patch(
        "v1",
        "Node",
        None,
        "n1",
        PatchType::Merge,
        &label(Value::Null),
    )
    .unwrap();
    assert!(matches!(next(&mut w).await, Ok(Event::Delete(n)) if name_of(&n) == "n1"));
}

#[tokio::test]
async fn compaction_makes_the_watcher_relist() {
    let s = standin();
    s.create(node("n1")).unwrap();
    let nodes: Api<Node> = Api::all(client(&s).await);
    let mut w = spawn_watch(watcher::watcher(nodes, watcher::Config::default()));
    until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert!(s.wait_for_watches(1, STEP).await);
    assert_eq!(s.request_count_for("list", "nodes"), 1);

    s.compact();
    match next(&mut w).await {
        Err(watcher::Error::WatchError(st)) => {
            assert_eq!(st.code, 410);
            assert_eq!(st.reason, "Expired");
        }
        other => panic!("expected the 410, got {other:?}"),
    }
    let ev = until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert!(matches!(ev[0], Ok(Event::Init)));
    assert!(matches!(&ev[1], Ok(Event::InitApply(n)) if name_of(n) == "n1"));
    assert_eq!(s.request_count_for("list", "nodes"), 2);

    s.create(node("n3")).unwrap();
    assert!(matches!(next(&mut w).await, Ok(Event::Apply(n)) if name_of(&n) == "n3"));
}

#[tokio::test]
async fn stale_replace_and_preconditions_conflict() {
    let s = standin();
    let nodes: Api<Node> = Api::all(client(&s).await);
    let pp = PostParams::default();
    let n1: Node = serde_json::from_value(node("n1")).unwrap();
    let created = nodes.create(&pp, &n1).await.unwrap();
    let rv0 = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let st = api_status(nodes.create(&pp, &n1).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "AlreadyExists"));
    let st = api_status(nodes.get("missing").await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (404, "NotFound"));
    assert_eq!(st.message, "nodes \"missing\" not found");

    let mut fresh = created.clone();
    fresh.metadata.labels = Some([("x".to_string(), "1".to_string())].into());
    let updated = nodes.replace("n1", &pp, &fresh).await.unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv0.as_str())
    );

    let mut stale = created.clone();
    stale.metadata.labels = Some([("x".to_string(), "2".to_string())].into());
    let st = api_status(nodes.replace("n1", &pp, &stale).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        st.message,
        "Operation cannot be fulfilled on nodes \"n1\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // Injected conflicts, then success.
    s.inject_conflict_next(1);
    let patch = Patch::Merge(json!({"metadata": {"labels": {"y": "1"}}}));
    let st = api_status(
        nodes
            .patch("n1", &PatchParams::default(), &patch)
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 409);
    nodes
        .patch("n1", &PatchParams::default(), &patch)
        .await
        .unwrap();

    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(rv0),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let st = api_status(nodes.delete("n1", &dp).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    let deleted = nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    assert!(deleted.left().is_some_and(|n| name_of(&n) == "n1"));
    assert!(s.get("v1", "Node", None, "n1").is_none());
}

#[tokio::test]
async fn node_status_patches_merge_annotations_and_conditions() {
    let s = standin();
    s.create(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "annotations": {"keep": "me"}},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap();
    let c = client(&s).await;
    let nodes: Api<Node> = Api::all(c.clone());
    let pp = PatchParams::default();

    let merge = Patch::Merge(json!({
        "metadata": {"annotations": {"projectcalico.org/IPv4Address": "10.0.0.1/24"}},
        "spec": {"podCIDR": "ignored/24"}
    }));
    let n = nodes.patch_status("n1", &pp, &merge).await.unwrap();
    let ann = n.metadata.annotations.clone().unwrap();
    assert_eq!(ann["projectcalico.org/IPv4Address"], "10.0.0.1/24");
    assert_eq!(ann["keep"], "me");
    assert_eq!(n.spec.unwrap().pod_cidr.as_deref(), Some("10.244.1.0/24"));

    let strategic = Patch::Strategic(json!({"status": {"conditions": [
        {"type": "NetworkUnavailable", "status": "False", "reason": "CalicoIsUp"}
    ]}}));
    let n = nodes.patch_status("n1", &pp, &strategic).await.unwrap();
    let types: Vec<String> = n
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, ["Ready", "NetworkUnavailable"]);

    // Main-resource writes leave the status alone.
    let n = nodes
        .patch(
            "n1",
            &pp,
            &Patch::Merge(json!({"status": {"conditions": []}})),
        )
        .await
        .unwrap();
    assert_eq!(n.status.unwrap().conditions.unwrap().len(), 2);

    // kube's typed JSON patch needs its `jsonpatch` feature: send one raw.
    let ops = json!([
        {"op": "test", "path": "/metadata/annotations/keep", "value": "me"},
        {"op": "remove", "path": "/metadata/annotations/keep"}
    ]);
    let req = http::Request::patch("/api/v1/nodes/n1")
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap();
    let n: Node = c.request(req).await.unwrap();
    assert!(!n.metadata.annotations.unwrap().contains_key("keep"));

    // Server-side apply, approximated: create, then merge.
    let ssa = PatchParams::apply("brindle-test");
    let body = |v: &str| {
        Patch::Apply(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2", "labels": {"a": v}}}),
        )
    };
    let n = nodes.patch("n2", &ssa, &body("1")).await.unwrap();
    assert_eq!(n.metadata.labels.unwrap()["a"], "1");
    let n = nodes.patch("n2", &ssa, &body("2")).await.unwrap();
    assert_eq!(n.metadata.labels.unwrap()["a"], "2");
}

#[tokio::test]
async fn pods_by_node_and_namespace_rules() {
    let s = standin();
    for (name, node) in [("p1", "n1"), ("p2", "n2")] {
        s.create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": "10.244.0.5"}
        }))
        .unwrap();
    }
    let c = client(&s).await;
    let pods: Api<Pod> = Api::all(c.clone());
    let cfg = watcher::Config::default().fields("spec.nodeName=n1");
    let mut w = spawn_watch(watcher::watcher(pods, cfg));
    let ev = until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert_eq!(ev.len(), 3);
    match &ev[1] {
        Ok(Event::InitApply(p)) => {
            assert_eq!(name_of(p), "p1");
            assert_eq!(
                p.status.as_ref().unwrap().pod_ip.as_deref(),
                Some("10.244.0.5")
            );
        }
        other => panic!("{other:?}"),
    }
    s.delete("v1", "Pod", Some("default"), "p2").unwrap();
    s.delete("v1", "Pod", Some("default"), "p1").unwrap();
    assert!(matches!(next(&mut w).await, Ok(Event::Delete(p)) if name_of(&p) == "p1"));

    let elsewhere: Api<Pod> = Api::namespaced(c, "nowhere");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p3"}})).unwrap();
    let st = api_status(
        elsewhere
            .create(&PostParams::default(), &pod)
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 404);
    assert_eq!(st.message, "namespaces \"nowhere\" not found");
}

const CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ippools.crd.projectcalico.org
spec:
  group: crd.projectcalico.org
  names:
    kind: IPPool
    listKind: IPPoolList
    plural: ippools
    singular: ippool
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[tokio::test]
async fn dynamic_objects_of_a_crd_installed_from_yaml() {
    let s = standin();
    let c = client(&s).await;
    let crd: CustomResourceDefinition = serde_saphyr::from_str(CRDS).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let crd = crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = crd
        .status
        .and_then(|st| st.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);

    let gvk = GroupVersionKind::gvk("crd.projectcalico.org", "v1", "IPPool");
    let (ar, caps) = kube::discovery::pinned_kind(&c, &gvk).await.unwrap();
    assert_eq!(ar.plural, "ippools");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    let discovery = kube::Discovery::new(c.clone()).run().await.unwrap();
    assert!(discovery.has_group("crd.projectcalico.org"));
    let aggregated = kube::Discovery::new(c.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(aggregated.resolve_gvk(&gvk).is_some());

    let pools: Api<DynamicObject> = Api::all_with(c.clone(), &ar);
    let pool = |name: &str, cidr: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "ipipMode": "Never", "natOutgoing": true}
        }))
        .unwrap()
    };
    pools
        .create(
            &PostParams::default(),
            &pool("default-ipv4", "10.244.0.0/16"),
        )
        .await
        .unwrap();
    let list = pools.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].data["spec"]["cidr"], "10.244.0.0/16");

    let mut w = spawn_watch(watcher::watcher(pools.clone(), watcher::Config::default()));
    let ev = until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert!(matches!(&ev[1], Ok(Event::InitApply(p)) if name_of(p) == "default-ipv4"));

    pools
        .create(&PostParams::default(), &pool("extra", "10.245.0.0/16"))
        .await
        .unwrap();
    match next(&mut w).await {
        Ok(Event::Apply(p)) => {
            assert_eq!(name_of(&p), "extra");
            assert_eq!(p.data["spec"]["natOutgoing"], true);
        }
        other => panic!("{other:?}"),
    }
    // Custom resources answer a delete with a Success Status.
    let d = pools
        .delete("extra", &DeleteParams::default())
        .await
        .unwrap();
    assert!(d.right().is_some_and(|st| st.is_success()));
    assert!(matches!(next(&mut w).await, Ok(Event::Delete(p)) if name_of(&p) == "extra"));

    // The store API sees the same objects.
    assert_eq!(s.list("crd.projectcalico.org/v1", "IPPool", None).len(), 1);
    let st = api_status(
        pools
            .patch(
                "default-ipv4",
                &PatchParams::default(),
                &Patch::Strategic(json!({})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 415);
}

#[tokio::test]
async fn outage_breaks_the_watch_and_recovery_resumes_it() {
    let s = standin();
    s.create(node("n1")).unwrap();
    let nodes: Api<Node> = Api::all(client(&s).await);
    let mut w =
        spawn_watch(watcher::watcher(nodes.clone(), watcher::Config::default()).default_backoff());
    until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert!(s.wait_for_watches(1, STEP).await);

    s.set_unavailable(true);
    assert!(
        tokio::net::TcpStream::connect(s.addr()).await.is_err(),
        "refused while down"
    );
    assert!(nodes.list(&ListParams::default()).await.is_err());
    until(&mut w, |e| e.is_err()).await;
    s.create(node("n2")).unwrap();
    assert_eq!(s.active_watches(), 0);

    s.set_unavailable(false);
    let ev = until(
        &mut w,
        |e| matches!(e, Ok(Event::Apply(n)) if name_of(n) == "n2"),
    )
    .await;
    assert!(
        ev.iter().all(|e| !matches!(e, Ok(Event::Init))),
        "resumed, not relisted: {ev:?}"
    );
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let s = standin();
    let yaml = s.kubeconfig_yaml().replace(s.token(), "not-the-token");
    let bad: Api<Node> = Api::all(client_for(&yaml).await);
    let st = api_status(bad.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (401, "Unauthorized"));
    assert!(s.unauthorized_count() >= 1);
    let good = client(&s).await;
    assert_eq!(good.apiserver_version().await.unwrap().major, "1");
}

#[tokio::test]
async fn pagination_and_metadata_lists() {
    let s = standin();
    for i in 0..7 {
        s.create(node(&format!("n{i}"))).unwrap();
    }
    let nodes: Api<Node> = Api::all(client(&s).await);
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = nodes.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(name_of));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    assert_eq!(names, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]);
    s.reset_counters();

    let mut w = spawn_watch(watcher::watcher(
        nodes.clone(),
        watcher::Config::default().page_size(3),
    ));
    let ev = until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert_eq!(ev.len(), 9);
    assert_eq!(s.request_count_for("list", "nodes"), 3);

    let meta = nodes
        .list_metadata(&ListParams::default().fields("metadata.name=n3"))
        .await
        .unwrap();
    assert_eq!(meta.items.len(), 1);
    assert_eq!(meta.items[0].metadata.name.as_deref(), Some("n3"));
    let st = api_status(
        nodes
            .list(&ListParams::default().fields("spec.nope=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 400);
}

#[tokio::test]
async fn control_socket_drives_faults() {
    let s = standin();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    s.serve_control_socket(&sock).unwrap();
    let yaml = dir.path().join("objs.yaml");
    std::fs::write(
        &yaml,
        format!(
            "{CRDS}---\napiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata:\n  name: p1\nspec:\n  cidr: 10.9.0.0/16\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: n9\n"
        ),
    )
    .unwrap();
    let apply = format!("apply {}", yaml.display());
    assert_eq!(
        control::request(&sock, &apply).await.unwrap(),
        ["applied 3 objects"]
    );
    let got = control::request(&sock, "get ippools p1").await.unwrap();
    let p1: Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(p1["spec"]["cidr"], "10.9.0.0/16");
    assert_eq!(control::request(&sock, "list node").await.unwrap().len(), 1);
    control::request(&sock, "delete no n9").await.unwrap();
    assert!(s.get("v1", "Node", None, "n9").is_none());

    control::request(&sock, "stop 0.4").await.unwrap();
    assert!(tokio::net::TcpStream::connect(s.addr()).await.is_err());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(tokio::net::TcpStream::connect(s.addr()).await.is_ok());

    // (kube retries 429/503/504 by itself, honouring Retry-After: use a 500.)
    control::request(&sock, "fail list nodes 500 1")
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client(&s).await);
    let st = api_status(nodes.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (500, "InternalError"));
    nodes.list(&ListParams::default()).await.unwrap();
    // A CRD registered from the library API, whose plural clashes with a built-in's.
    s.register_crd(
        "crd.projectcalico.org",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    )
    .unwrap();
    s.apply(json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "np1", "namespace": "default"}, "spec": {"order": 10}
    }))
    .unwrap();
    let got = control::request(
        &sock,
        "get networkpolicies.crd.projectcalico.org default/np1",
    )
    .await
    .unwrap();
    assert!(got[0].contains("\"order\":10"));
    assert!(control::request(&sock, "get networkpolicies default/np1")
        .await
        .is_err());
    let raw: Value = client(&s)
        .await
        .request(
            http::Request::get(
                "/apis/crd.projectcalico.org/v1/namespaces/default/networkpolicies/np1",
            )
            .body(Vec::new())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw["spec"]["order"], 10);

    let rv: u64 = control::request(&sock, "rv").await.unwrap()[0]
        .parse()
        .unwrap();
    assert_eq!(rv, s.resource_version());
    assert!(control::request(&sock, "bogus").await.is_err());
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_changes() {
    let s = standin();
    s.create(node("n1")).unwrap();
    let nodes: Api<Node> = Api::all(client(&s).await);
    let cfg = watcher::Config::default().streaming_lists();
    let mut w = spawn_watch(watcher::watcher(nodes, cfg));
    let ev = until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert!(matches!(&ev[1], Ok(Event::InitApply(n)) if name_of(n) == "n1"));
    assert_eq!(s.request_count_for("list", "nodes"), 0);
    s.create(node("n2")).unwrap();
    assert!(matches!(next(&mut w).await, Ok(Event::Apply(n)) if name_of(&n) == "n2"));
}

fn pod(ns: &str, name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    })
}

/// A raw request's status code and body (errors included, unlike `request_text`).
async fn raw(c: &kube::Client, uri: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let resp = c
        .send(http::Request::get(uri).body(Vec::new().into()).unwrap())
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn bulk_load_and_a_history_bounded_by_bytes() {
    let s = StandIn::start(Config {
        history_bytes: 8 * 1024,
        ..Config::default()
    })
    .unwrap();
    // Namespace last in the input: create_many puts it first.
    let mut objs: Vec<Value> = (0..200)
        .map(|i| pod("bulk", &format!("p{i:03}"), &format!("n{}", i % 4)))
        .collect();
    objs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bulk"}}));
    assert_eq!(s.create_many(objs).unwrap(), 201);
    let err = s.create_many(vec![pod("bulk", "p000", "n0")]).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");

    let c = client(&s).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "bulk");
    let on_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(on_n1.items.len(), 50);
    let one = pods
        .list(&ListParams::default().labels("app=p007"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(
        one.items[0].spec.as_ref().unwrap().node_name.as_deref(),
        Some("n3")
    );
    let got = pods.get("p042").await.unwrap();
    assert_eq!(got.status.unwrap().pod_ip.as_deref(), Some("10.0.0.1"));

    // A first page, then the 8 KiB history overflows: its resourceVersion is too old.
    let first = pods.list(&ListParams::default().limit(50)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let first_rv = first.metadata.resource_version.clone().unwrap();
    assert_eq!(first.metadata.remaining_item_count, Some(150));
    for i in 0..50 {
        s.create(pod("bulk", &format!("q{i:03}"), "n0")).unwrap();
    }
    let (code, body) = raw(
        &c,
        &format!("/api/v1/namespaces/bulk/pods?limit=50&continue={token}"),
    )
    .await;
    assert_eq!(code, 410);
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["reason"], "Expired");
    let fresh = st["metadata"]["continue"].as_str().expect("a fresh token");
    // The fresh token goes on after the first page, at the present revision.
    let rest = pods
        .list(&ListParams::default().limit(50).continue_token(fresh))
        .await
        .unwrap();
    assert_eq!(name_of(&rest.items[0]), "p050");
    assert_eq!(
        rest.metadata.resource_version.as_deref(),
        Some(s.resource_version().to_string().as_str())
    );
    // A watch from the first page's resourceVersion: one 410 ERROR event.
    let (code, body) = raw(
        &c,
        &format!("/api/v1/namespaces/bulk/pods?watch=1&resourceVersion={first_rv}"),
    )
    .await;
    assert_eq!(code, 200);
    let ev: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["object"]["code"].as_i64()),
        (Some("ERROR"), Some(410))
    );
    // Label transitions after the initial list: ADDED, then DELETED (the object as it
    // was, with the write's resourceVersion).
    let label = |v: Value| json!({"metadata": {"labels": {"x": v}}});
    s.patch(
        "v1",
        "Pod",
        Some("bulk"),
        "p001",
        PatchType::Merge,
        &label(json!("y")),
    )
    .unwrap();
    let mut w = spawn_watch(watcher::watcher(
        pods.clone(),
        watcher::Config::default().labels("x=y"),
    ));
    let ev = until(&mut w, |e| matches!(e, Ok(Event::InitDone))).await;
    assert!(ev
        .iter()
        .any(|e| matches!(e, Ok(Event::InitApply(p)) if name_of(p) == "p001")));
    s.patch(
        "v1",
        "Pod",
        Some("bulk"),
        "p002",
        PatchType::Merge,
        &label(json!("y")),
    )
    .unwrap();
    assert!(matches!(next(&mut w).await, Ok(Event::Apply(p)) if name_of(&p) == "p002"));
    s.patch(
        "v1",
        "Pod",
        Some("bulk"),
        "p002",
        PatchType::Merge,
        &label(Value::Null),
    )
    .unwrap();
    match next(&mut w).await {
        Ok(Event::Delete(p)) => {
            assert_eq!(name_of(&p), "p002");
            assert_eq!(
                p.metadata.resource_version,
                Some(s.resource_version().to_string())
            );
            assert_eq!(p.metadata.labels.unwrap()["x"], "y");
        }
        other => panic!("expected a Delete, got {other:?}"),
    }
}

#[tokio::test]
async fn json_files_load_through_the_library_and_the_control_socket() {
    let s = standin();
    let dir = tempfile::tempdir().unwrap();
    let ndjson = dir.path().join("objs.jsonl");
    let mut text = String::new();
    text.push_str(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}).to_string(),
    );
    text.push('\n');
    for i in 0..3 {
        text.push_str(&pod("a", &format!("p{i}"), "n1").to_string());
        text.push('\n');
    }
    // An array and a List are documents too.
    text.push_str(&json!([node("n1"), node("n2")]).to_string());
    text.push_str(&json!({"kind": "List", "apiVersion": "v1", "items": [node("n3")]}).to_string());
    std::fs::write(&ndjson, text).unwrap();
    assert_eq!(s.load_json_file(&ndjson).unwrap(), 7);
    assert_eq!(s.list("v1", "Pod", Some("a")).len(), 3);
    assert_eq!(s.list("v1", "Node", None).len(), 3);
    assert!(s.load_json_file(dir.path().join("missing.json")).is_err());

    let sock = dir.path().join("ctl.sock");
    s.serve_control_socket(&sock).unwrap();
    let more = dir.path().join("more.json");
    std::fs::write(&more, json!([pod("a", "p9", "n2")]).to_string()).unwrap();
    assert_eq!(
        control::request(&sock, &format!("load {}", more.display()))
            .await
            .unwrap(),
        ["created 1 objects"]
    );
    assert!(s.get("v1", "Pod", Some("a"), "p9").is_some());
    // Again: 409, reported as an error.
    let e = control::request(&sock, &format!("load {}", more.display()))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("already exists"), "{e:#}");
}
