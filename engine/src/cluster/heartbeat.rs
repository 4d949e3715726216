//! The cluster task: one round every `heartbeat_every` (tokio time; the interval is configuration,
//! the times written are the clock's). A round (re)connects if needed, then in one atomic pipeline
//! writes this node's record with its TTL, adds the id to `penguin:nodes` and reads the set; then
//! reads the members' records (`MGET`) and removes the ids whose records have expired. Every step is
//! bounded by `redis_timeout`; after a failure the connection is dropped and the next round connects
//! afresh.

use std::future::Future;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{Cluster, ClusterError, NODE_KEY_PREFIX, NODES_SET_KEY, NodeRecord};

/// The rounds of one node, with its connection.
struct Heartbeat {
    /// The handle the rounds report to.
    cluster: Cluster,
    /// The connection, while it works.
    connection: Option<MultiplexedConnection>,
}

/// Runs the rounds until `stopped`, then removes this node's record (best effort, bounded).
pub(super) async fn run(cluster: Cluster, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(cluster.inner.heartbeat_every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heartbeat = Heartbeat {
        cluster,
        connection: None,
    };
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
        tokio::select! {
            () = heartbeat.beat() => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
    }
    heartbeat.leave().await;
}

impl Heartbeat {
    /// One round; its outcome goes to the handle.
    async fn beat(&mut self) {
        let record = self.cluster.own_record();
        match self.round(&record).await {
            Ok(others) => self.cluster.succeeded(&record, others),
            Err(error) => {
                self.connection = None;
                self.cluster.failed(&error);
            }
        }
    }

    /// Writes `record` and reads every node's.
    async fn round(&mut self, record: &NodeRecord) -> Result<Vec<NodeRecord>, ClusterError> {
        let mut connection = self.connect().await?;
        let ttl_ms = u64::try_from(self.cluster.inner.node_timeout.as_millis()).unwrap_or(u64::MAX);
        // Serialising plain data cannot fail.
        let json = serde_json::to_string(record).unwrap_or_default();
        let mut write = redis::pipe();
        write
            .atomic()
            .cmd("SET")
            .arg(node_key(&record.id))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("SADD")
            .arg(NODES_SET_KEY)
            .arg(&record.id)
            .ignore()
            .cmd("SMEMBERS")
            .arg(NODES_SET_KEY);
        let (mut ids,): (Vec<String>,) = self
            .bounded("SET/SADD/SMEMBERS", write.query_async(&mut connection))
            .await?;
        ids.sort();
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let values: Vec<Option<String>> = self
            .bounded("MGET", redis::cmd("MGET").arg(&keys).query_async(&mut connection))
            .await?;
        let mut records = Vec::with_capacity(ids.len());
        let mut expired = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.map(|json| serde_json::from_str::<NodeRecord>(&json)) {
                Some(Ok(record)) => records.push(record),
                Some(Err(error)) => tracing::warn!(node = %id, %error, "cluster: unreadable node record"),
                None => expired.push(id),
            }
        }
        if !expired.is_empty() {
            let mut remove = redis::cmd("SREM");
            remove.arg(NODES_SET_KEY).arg(&expired);
            self.bounded("SREM", remove.query_async::<()>(&mut connection))
                .await?;
        }
        self.connection = Some(connection);
        Ok(records)
    }

    /// The working connection, or a new one.
    async fn connect(&mut self) -> Result<MultiplexedConnection, ClusterError> {
        match self.connection.take() {
            Some(connection) => Ok(connection),
            None => self.cluster.connect().await,
        }
    }

    /// `call`, failing with a timeout after `redis_timeout`.
    async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        self.cluster.bounded(what, call).await
    }

    /// At shutdown: deletes this node's record and its id in the set, if Redis is there.
    async fn leave(&mut self) {
        let Ok(mut connection) = self.connect().await else {
            return;
        };
        let node = self.cluster.node().to_owned();
        let mut remove = redis::pipe();
        remove
            .atomic()
            .cmd("DEL")
            .arg(node_key(&node))
            .ignore()
            .cmd("SREM")
            .arg(NODES_SET_KEY)
            .arg(&node)
            .ignore();
        if let Err(error) = self
            .bounded("DEL/SREM", remove.query_async::<()>(&mut connection))
            .await
        {
            tracing::debug!(%error, "cluster: could not remove this node's record at shutdown");
        }
    }
}

/// The key of a node's record.
fn node_key(id: &str) -> String {
    format!("{NODE_KEY_PREFIX}{id}")
}
