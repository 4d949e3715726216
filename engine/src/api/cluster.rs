//! `GET /v1/cluster` (admin only): this node's view of the cluster (`[cluster]`, see `crate::cluster`):
//! its id, Redis's URL (without password) and state, and the nodes heard of within `node_timeout`.
//! Without `[cluster]`: `{"node": null, "redis": null, "nodes": []}` (a node on its own is no cluster).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use crate::cluster::{Cluster, NodeInfo};
use crate::timefmt::rfc3339_millis;

/// The body of `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// This node's id (`cluster.node`); null without `[cluster]`.
    pub node: Option<String>,
    /// The Redis server and whether this node reaches it; null without `[cluster]`.
    pub redis: Option<RedisStatus>,
    /// This node first, then the others heard of within `cluster.node_timeout`, by id; empty
    /// without `[cluster]`.
    pub nodes: Vec<ClusterNode>,
}

/// Redis as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RedisStatus {
    /// `cluster.redis` without its password.
    pub url: String,
    /// Whether the last heartbeat round reached it (false before the first).
    pub up: bool,
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterNode {
    /// Its id.
    pub id: String,
    /// The penguin-mta version it runs.
    pub version: String,
    /// Its last heartbeat (RFC 3339); for this node the last one Redis accepted, null before the
    /// first.
    pub last_heartbeat: Option<String>,
    /// Messages in its queue at that heartbeat (for this node: now).
    pub queue_size: u64,
    /// Whether it is the node that answers.
    #[serde(rename = "self")]
    pub is_self: bool,
}

impl ClusterStatus {
    /// The view of `cluster`, or the empty one without `[cluster]`.
    pub fn of(cluster: Option<&Cluster>) -> ClusterStatus {
        let Some(cluster) = cluster else {
            return ClusterStatus {
                node: None,
                redis: None,
                nodes: Vec::new(),
            };
        };
        ClusterStatus {
            node: Some(cluster.node().to_owned()),
            redis: Some(RedisStatus {
                url: cluster.redis_url().to_owned(),
                up: cluster.is_up(),
            }),
            nodes: cluster.nodes().into_iter().map(ClusterNode::from).collect(),
        }
    }
}

impl From<NodeInfo> for ClusterNode {
    fn from(node: NodeInfo) -> ClusterNode {
        ClusterNode {
            id: node.id,
            version: node.version,
            last_heartbeat: node.last_heartbeat.map(rfc3339_millis),
            queue_size: node.queue_size,
            is_self: node.is_self,
        }
    }
}

/// `GET /v1/cluster` (admin): never waits on Redis (the last round's state).
#[utoipa::path(get, path = "/v1/cluster", tag = "operations",
    responses((status = 200, body = ClusterStatus), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<ClusterStatus>, ApiError> {
    principal.require_admin()?;
    Ok(Json(ClusterStatus::of(state.cluster.as_ref())))
}
