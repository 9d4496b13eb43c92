//! The IPAM [`Store`] on Calico's own CRDs (`ipamblocks`, `blockaffinities`,
//! `ipamhandles`, `ipamconfigs` in `crd.projectcalico.org/v1`, or the
//! `projectcalico.org/v3` CRDs), in Calico's format, so that Calico and Brindle read
//! each other's allocations on a migrated cluster. Compare-and-swap is the API's own: an
//! update carries the `resourceVersion` read (409 → [`StoreError::Conflict`]); a delete
//! first marks the object `deleted` at that version, then deletes with the new version
//! as a precondition, as Calico does (the API does not check a delete against a
//! version otherwise).

use super::objects::IpamObject;
use super::store::{Store, StoreError, StoreResult, Versioned};
use crate::datastore::kubernetes::CalicoGroup;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams, Preconditions,
};
use kube::{Api, Client};

/// See the module doc.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
    group: CalicoGroup,
}

fn resource<T: IpamObject>(group: CalicoGroup) -> ApiResource {
    let (kind, plural) = match (T::KIND, group) {
        ("IPAMConfig", CalicoGroup::V3) => ("IPAMConfiguration", "ipamconfigurations"),
        (k, _) => (k, T::PLURAL),
    };
    ApiResource {
        group: group.group().into(),
        version: group.version().into(),
        api_version: format!("{}/{}", group.group(), group.version()),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn api_error(what: &str, e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists" => {
            StoreError::AlreadyExists(what.into())
        }
        kube::Error::Api(s) if s.code == 409 => {
            StoreError::Conflict(format!("{what}: {}", s.message))
        }
        kube::Error::Api(s) if s.code == 404 => StoreError::NotFound(what.into()),
        other => StoreError::Other(format!("{what}: {other}")),
    }
}

impl KubeStore {
    pub fn new(client: Client, group: CalicoGroup) -> KubeStore {
        KubeStore { client, group }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn group(&self) -> CalicoGroup {
        self.group
    }

    fn api<T: IpamObject>(&self) -> (Api<DynamicObject>, ApiResource) {
        let ar = resource::<T>(self.group);
        (Api::all_with(self.client.clone(), &ar), ar)
    }

    fn v3(&self) -> bool {
        self.group == CalicoGroup::V3
    }

    fn decode<T: IpamObject>(&self, o: DynamicObject) -> StoreResult<Versioned<T>> {
        let name = o.metadata.name.clone().unwrap_or_default();
        let spec = o
            .data
            .get("spec")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let value = T::from_spec(spec)
            .map_err(|e| StoreError::Other(format!("{}/{name}: {e}", T::KIND)))?;
        Ok(Versioned {
            value,
            revision: o.metadata.resource_version.unwrap_or_default(),
        })
    }

    fn object<T: IpamObject>(
        &self,
        ar: &ApiResource,
        value: &T,
        revision: Option<&str>,
    ) -> DynamicObject {
        let labels = value.labels();
        let mut o = DynamicObject::new(&value.name(), ar)
            .data(serde_json::json!({"spec": value.to_spec(self.v3())}));
        o.metadata = ObjectMeta {
            name: Some(value.name()),
            resource_version: revision.map(str::to_string),
            labels: (!labels.is_empty()).then_some(labels),
            ..ObjectMeta::default()
        };
        o
    }
}

impl Store for KubeStore {
    async fn get<T: IpamObject>(&self, name: &str) -> StoreResult<Versioned<T>> {
        let what = format!("{}/{name}", T::KIND);
        let (api, _) = self.api::<T>();
        let o = api.get(name).await.map_err(|e| api_error(&what, e))?;
        let v = self.decode::<T>(o)?;
        if v.value.is_deleted() {
            return Err(StoreError::NotFound(what));
        }
        Ok(v)
    }

    async fn list<T: IpamObject>(&self) -> StoreResult<Vec<Versioned<T>>> {
        let (api, _) = self.api::<T>();
        let mut out = Vec::new();
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = api.list(&lp).await.map_err(|e| api_error(T::PLURAL, e))?;
            for o in page.items {
                let v = self.decode::<T>(o)?;
                if !v.value.is_deleted() {
                    out.push(v);
                }
            }
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn create<T: IpamObject>(&self, value: T) -> StoreResult<Versioned<T>> {
        let what = format!("{}/{}", T::KIND, value.name());
        let (api, ar) = self.api::<T>();
        let o = api
            .create(&PostParams::default(), &self.object(&ar, &value, None))
            .await
            .map_err(|e| api_error(&what, e))?;
        Ok(Versioned {
            value,
            revision: o.metadata.resource_version.unwrap_or_default(),
        })
    }

    async fn update<T: IpamObject>(&self, obj: Versioned<T>) -> StoreResult<Versioned<T>> {
        let name = obj.value.name();
        let what = format!("{}/{name}", T::KIND);
        let (api, ar) = self.api::<T>();
        let o = api
            .replace(
                &name,
                &PostParams::default(),
                &self.object(&ar, &obj.value, Some(&obj.revision)),
            )
            .await
            .map_err(|e| api_error(&what, e))?;
        Ok(Versioned {
            value: obj.value,
            revision: o.metadata.resource_version.unwrap_or_default(),
        })
    }

    async fn delete<T: IpamObject>(&self, obj: Versioned<T>) -> StoreResult<()> {
        let name = obj.value.name();
        let what = format!("{}/{name}", T::KIND);
        let (api, ar) = self.api::<T>();
        // Mark it deleted at the version read (the compare), then delete that version.
        let mut spec = obj.value.to_spec(self.v3());
        let marked = match spec.get_mut("deleted") {
            Some(d) => {
                *d = if d.is_string() {
                    serde_json::json!("true")
                } else {
                    serde_json::json!(true)
                };
                let mut o = self.object(&ar, &obj.value, Some(&obj.revision));
                o.data = serde_json::json!({"spec": spec});
                let o = api
                    .replace(&name, &PostParams::default(), &o)
                    .await
                    .map_err(|e| api_error(&what, e))?;
                o.metadata.resource_version.unwrap_or_default()
            }
            None => obj.revision.clone(),
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(marked),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) => Err(api_error(&what, e)),
        }
    }
}
