//! Endpoint records and the matching index, per tenant, in the tenant's
//! shard (every key of a tenant carries its shard's hash tag, so the
//! scripts that match and expand events see all of them at once):
//!
//! | key                      | type | holds                                         |
//! |--------------------------|------|-----------------------------------------------|
//! | `ep:<tenant>:<id>`       | hash | `json` (the endpoint), `url`, `host`, `filter`, `rev`, `ix` (its index entries), and for flow control `disabled`, `ordered`, `rate`, `cap` |
//! | `eps:<tenant>`           | zset | the tenant's endpoints by creation (ms)       |
//! | `tenants`                | zset | tenants with an endpoint (score 0, by name)   |
//! | `ix:<tenant>:<u|f>:<type or *>` | zset | enabled endpoints wanting that type (`*`: every type), without (`u`) or with (`f`) a filter; score 0, paged by id |
//! | `epd:<tenant>:<id>`      | zset | the endpoint's deliveries (job ids), by their event's creation (ms) |
//!
//! This module knows key names only; what an endpoint is, and which index
//! entries it belongs in, is `crate::endpoints`'s.

use redis::{AsyncCommands, Script};

use crate::domain::{EndpointId, JobId, TenantId};

use super::{JobStore, StoreError};

static SAVE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/endpoint_save.lua")));
static DELETE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/endpoint_delete.lua")));

/// An endpoint to write, already encoded by its owner.
#[derive(Debug, Clone)]
pub struct EndpointWrite<'a> {
    /// The tenant.
    pub tenant: &'a TenantId,
    /// The endpoint.
    pub id: &'a EndpointId,
    /// The whole record, JSON.
    pub json: String,
    /// Its URL (copied into each delivery).
    pub url: &'a str,
    /// Its host.
    pub host: &'a str,
    /// Its filter, JSON, if any (evaluated by the matching scripts).
    pub filter: Option<String>,
    /// Its creation time (ms), the listing order.
    pub created_ms: i64,
    /// What flow control reads of it at every claim.
    pub flow: FlowFields,
    /// Index entries: `u:<type>`, `u:*`, `f:<type>`, `f:*`; none while
    /// disabled.
    pub entries: Vec<String>,
}

/// The endpoint's settings the gate in `claim.lua` reads, copied into its
/// hash by the same save that writes the record, so they never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowFields {
    /// Deliveries are held.
    pub disabled: bool,
    /// One at a time, in order.
    pub ordered: bool,
    /// Sends per second at most.
    pub rate_limit: Option<u32>,
    /// Attempts out at once at most.
    pub max_in_flight: u32,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Written; this is its revision now.
    Ok(u64),
    /// Creation, but the id exists.
    Exists,
    /// A change, but the endpoint is gone.
    Missing,
    /// A change, but someone else changed it since it was read.
    Conflict,
}

/// An endpoint as read: its JSON and revision.
#[derive(Debug, Clone)]
pub struct EndpointRead {
    /// The record.
    pub json: String,
    /// The revision a change must name.
    pub rev: u64,
}

/// The endpoint records of every tenant; see the module doc.
pub struct EndpointStore<'a> {
    store: &'a JobStore,
}

impl JobStore {
    /// Endpoint records.
    pub fn endpoints(&self) -> EndpointStore<'_> {
        EndpointStore { store: self }
    }

    /// The shard a tenant's endpoints, events and deliveries live in.
    pub fn shard_of_tenant(&self, tenant: &TenantId) -> usize {
        self.shards.of_key(tenant.as_str())
    }

    pub(super) fn tenant_prefix(&self, tenant: &TenantId) -> &str {
        &self.parts[self.shard_of_tenant(tenant)].prefix
    }

    pub(super) fn tenant_all(&self, tenant: &TenantId) -> &str {
        &self.parts[self.shard_of_tenant(tenant)].all
    }
}

impl EndpointStore<'_> {
    fn key(&self, tenant: &TenantId, id: &EndpointId) -> String {
        format!("{}ep:{tenant}:{id}", self.store.tenant_prefix(tenant))
    }

    /// Creates (`rev` None) or changes (`rev` as read) an endpoint.
    pub async fn save(&self, ep: &EndpointWrite<'_>, rev: Option<u64>) -> Result<Saved, StoreError> {
        let mut inv = SAVE.key(self.store.tenant_all(ep.tenant));
        inv.arg(self.store.tenant_prefix(ep.tenant))
            .arg(ep.tenant.as_str())
            .arg(ep.id.as_str())
            .arg(rev.map(|r| r.to_string()).unwrap_or_default())
            .arg(&ep.json)
            .arg(ep.url)
            .arg(ep.host)
            .arg(ep.filter.as_deref().unwrap_or_default())
            .arg(ep.created_ms)
            .arg(if ep.flow.disabled { "1" } else { "" })
            .arg(if ep.flow.ordered { "1" } else { "" })
            .arg(ep.flow.rate_limit.map(|r| r.to_string()).unwrap_or_default())
            .arg(ep.flow.max_in_flight)
            .arg(&ep.entries);
        let reply: String = inv.invoke_async(&mut self.store.conn.clone()).await?;
        Ok(match reply.as_str() {
            "exists" => Saved::Exists,
            "missing" => Saved::Missing,
            "conflict" => Saved::Conflict,
            n => Saved::Ok(n.parse().map_err(|_| StoreError::Corrupt { id: ep.id.to_string(), why: n.to_owned() })?),
        })
    }

    /// Reads an endpoint.
    pub async fn get(&self, tenant: &TenantId, id: &EndpointId) -> Result<Option<EndpointRead>, StoreError> {
        let (json, rev): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.key(tenant, id))
            .arg("json")
            .arg("rev")
            .query_async(&mut self.store.conn.clone())
            .await?;
        Ok(json.map(|json| EndpointRead { json, rev: rev.unwrap_or_default() }))
    }

    /// Deletes an endpoint; false if there was none.
    pub async fn delete(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError> {
        let n: i64 = DELETE
            .key(self.store.tenant_all(tenant))
            .arg(self.store.tenant_prefix(tenant))
            .arg(tenant.as_str())
            .arg(id.as_str())
            .invoke_async(&mut self.store.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// A page of a tenant's endpoints, oldest first, after `after` (the
    /// last id of the previous page); the JSON of each.
    pub async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&EndpointId>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = self.store.tenant_prefix(tenant);
        let mut conn = self.store.conn.clone();
        let index = format!("{prefix}eps:{tenant}");
        let start: isize = match after {
            Some(id) => match conn.zrank::<_, _, Option<isize>>(&index, id.as_str()).await? {
                Some(r) => r + 1,
                // The cursor's endpoint was deleted: its creation time is
                // lost, so the page starts over rather than skip any.
                None => 0,
            },
            None => 0,
        };
        let ids: Vec<String> = conn.zrange(&index, start, start + limit as isize - 1).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(format!("{prefix}ep:{tenant}:{id}"), "json");
        }
        let found: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// How many endpoints a tenant has.
    pub async fn count(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let prefix = self.store.tenant_prefix(tenant);
        Ok(self.store.conn.clone().zcard(format!("{prefix}eps:{tenant}")).await?)
    }

    /// Every tenant with at least one endpoint, by name, with its
    /// endpoint count, across shards.
    pub async fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for part in self.store.parts.iter() {
            let mut conn = self.store.conn.clone();
            let names: Vec<String> = conn.zrange(format!("{}tenants", part.prefix), 0, -1).await?;
            if names.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for t in &names {
                pipe.zcard(format!("{}eps:{t}", part.prefix));
            }
            let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
            out.extend(names.into_iter().zip(counts));
        }
        out.sort();
        Ok(out)
    }

    /// An endpoint's deliveries whose events were created in
    /// `[since, until]` (ms), oldest first, from `offset`, at most `limit`.
    pub async fn deliveries(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        (since, until): (i64, i64),
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobId>, StoreError> {
        let prefix = self.store.tenant_prefix(tenant);
        let ids: Vec<String> = self
            .store
            .conn
            .clone()
            .zrangebyscore_limit(format!("{prefix}epd:{tenant}:{id}"), since, until, offset as isize, limit as isize)
            .await?;
        Ok(ids.iter().filter_map(|i| JobId::parse(i).ok()).collect())
    }

    /// An endpoint's latest deliveries, newest first.
    pub async fn recent_deliveries(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        limit: usize,
    ) -> Result<Vec<JobId>, StoreError> {
        let prefix = self.store.tenant_prefix(tenant);
        let ids: Vec<String> =
            self.store.conn.clone().zrevrange(format!("{prefix}epd:{tenant}:{id}"), 0, limit as isize - 1).await?;
        Ok(ids.iter().filter_map(|i| JobId::parse(i).ok()).collect())
    }
}
