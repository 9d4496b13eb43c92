//! Kubernetes objects as the watchers receive them: decoded straight from the API's JSON
//! into Brindle's model ([`brindle_model::decode::kubernetes::from_api_json`]) while
//! kube-rs reads a list page or a watch event, so that no JSON tree and no
//! `DynamicObject` is built per object. A cluster has ~20 pods per node; at 5,000 nodes
//! that decides the agent's time to sync and its memory (BENCHMARKS.md, "Kubernetes
//! datastore").
//!
//! One object that does not decode must not fail its whole list page (kube-rs would
//! retry the list for ever): each item is first taken as raw JSON text
//! ([`serde_json::value::RawValue`], one copy of its bytes) and decoded from that; a
//! failure becomes a [`Slim`] holding the error with whatever metadata could be read.
//! Raw JSON text is available when the item is read from a JSON document by
//! `serde_json` with the event type before the object, which is how kube-rs reads list
//! pages and how the API server writes watch events (`{"type":…,"object":…}`).

use brindle_model::decode::kubernetes::{from_api_json, ApiDecodeError};
use brindle_model::{Kind, Object};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::marker::PhantomData;

/// Which kind a [`Slim`] object is (a type, because `Deserialize` has no context).
pub trait SlimKind: Clone + std::fmt::Debug + Send + Sync + 'static {
    const KIND: Kind;
}

macro_rules! slim_kinds {
    ($($name:ident => $kind:expr),* $(,)?) => {$(
        #[doc = concat!("Marker: [`", stringify!($kind), "`].")]
        #[derive(Clone, Debug)]
        pub struct $name;
        impl SlimKind for $name {
            const KIND: Kind = $kind;
        }
    )*};
}

slim_kinds! {
    PodKind => Kind::Pod,
    NodeKind => Kind::Node,
    NamespaceKind => Kind::Namespace,
    ServiceAccountKind => Kind::ServiceAccount,
    ServiceKind => Kind::Service,
    EndpointSliceKind => Kind::EndpointSlice,
}

/// One object of kind `K` from the API, already decoded (or the reason it was not).
#[derive(Clone, Debug)]
pub struct Slim<K> {
    /// Name, namespace and resourceVersion only (what kube-rs' watcher needs).
    metadata: ObjectMeta,
    pub decoded: Result<Box<Object>, ApiDecodeError>,
    kind: PhantomData<K>,
}

impl<'de, K: SlimKind> Deserialize<'de> for Slim<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(Slim::from_json(raw.get()))
    }
}

impl<K: SlimKind> Slim<K> {
    /// Decodes one object's JSON text.
    pub fn from_json(json: &str) -> Slim<K> {
        let (metadata, decoded) = match from_api_json(K::KIND, json) {
            Ok((o, resource_version)) => (
                ObjectMeta {
                    name: Some(o.raw.name.clone()),
                    namespace: o.raw.namespace.clone(),
                    resource_version,
                    ..ObjectMeta::default()
                },
                Ok(Box::new(o)),
            ),
            Err(e) => (
                ObjectMeta {
                    name: Some(e.name.clone()),
                    namespace: e.namespace.clone(),
                    resource_version: e.resource_version.clone(),
                    ..ObjectMeta::default()
                },
                Err(e),
            ),
        };
        Slim {
            metadata,
            decoded,
            kind: PhantomData,
        }
    }
}

impl<K: SlimKind> kube::Resource for Slim<K> {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_model::Resource;

    #[test]
    fn a_bad_item_does_not_fail_its_list_page() {
        let page = r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[
            {"metadata":{"name":"a","namespace":"shop","resourceVersion":"5","labels":{"app":"web"},
              "annotations":{"cni.projectcalico.org/podIP":"10.65.0.5/32","kubectl.kubernetes.io/last-applied-configuration":"{}"},
              "managedFields":[{"manager":"kubelet","fieldsV1":{"f:status":{}}}]},
             "spec":{"nodeName":"n1","containers":[{"name":"c","ports":[{"name":"http","containerPort":8080}]}]},
             "status":{"phase":"Running","podIPs":[{"ip":"10.65.0.5"}]}},
            {"metadata":{"name":"b","namespace":"shop","resourceVersion":"6"},
             "spec":{"containers":[{"ports":[{"containerPort":"eighty"}]}]}}
        ]}"#;
        let list: kube::core::ObjectList<Slim<PodKind>> = serde_json::from_str(page).unwrap();
        assert_eq!(list.items.len(), 2);
        let a = list.items[0].decoded.as_ref().unwrap();
        let Resource::Pod(p) = &a.resource else {
            panic!()
        };
        assert_eq!(&*p.namespace, "shop");
        assert_eq!(p.labels["app"], "web");
        assert_eq!(
            p.ips,
            vec!["10.65.0.5".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(&*p.ports[0].name, "http");
        assert_eq!(
            list.items[0].metadata.resource_version.as_deref(),
            Some("5")
        );
        let b = list.items[1].decoded.as_ref().unwrap_err();
        assert_eq!(b.label, "Pod/shop/b");
        assert!(b.message.contains("invalid type"), "{}", b.message);
        assert_eq!(
            list.items[1].metadata.resource_version.as_deref(),
            Some("6")
        );
    }

    #[test]
    fn watch_events_decode_when_the_type_comes_first() {
        let line = r#"{"type":"MODIFIED","object":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"shop","resourceVersion":"12"}}}"#;
        let e: kube::core::WatchEvent<Slim<NamespaceKind>> = serde_json::from_str(line).unwrap();
        let kube::core::WatchEvent::Modified(ns) = e else {
            panic!()
        };
        let Resource::Namespace(n) = &ns.decoded.as_ref().unwrap().resource else {
            panic!()
        };
        assert_eq!(n.labels["kubernetes.io/metadata.name"], "shop");
    }
}
