//! A real Redis Cluster on loopback, for the tests that run our processes
//! and apalis against one (`REDIS_CLUSTER=true`).
//!
//! [`TestCluster::start`] runs six `redis-server --cluster-enabled yes`
//! processes (three masters, one replica each) on free ports, joins them
//! with `redis-cli --cluster create`, and waits until every node says
//! `cluster_state:ok`. Dropping it kills them. Each test gets its own
//! cluster (a few seconds to start), so tests never share slots or nodes.

mod apalis;
mod conn;
mod e2e;
mod sources;
// Restarting a node serves only the chaos scenarios, which include this file.
#[allow(dead_code)]
mod harness;

pub use harness::{node_query, TestCluster};
