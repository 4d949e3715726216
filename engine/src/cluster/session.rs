//! What the subscribing sync tasks (`suppression_sync.rs`, `adaptive_sync.rs`) share: a session is one
//! connection's life (a command connection plus a subscription of its own), ended by a loss of Redis
//! (an error) or by the server stopping; [`again`] decides whether the next one starts, after a pause.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::{Cluster, ClusterError};

/// The messages of a subscription (the stream ends when its connection closes).
pub(super) type Messages = Pin<Box<dyn Stream<Item = redis::Msg> + Send>>;

impl Cluster {
    /// A command connection and a subscription to `channel` on a connection of its own (each step
    /// bounded by `redis_timeout`).
    pub(super) async fn subscribed(
        &self,
        channel: &'static str,
    ) -> Result<(MultiplexedConnection, Messages), ClusterError> {
        let connection = self.connect().await?;
        let mut pubsub = self
            .bounded("connect", self.inner.client.get_async_pubsub())
            .await?;
        self.bounded("SUBSCRIBE", pubsub.subscribe(channel)).await?;
        Ok((connection, Box::pin(pubsub.into_on_message())))
    }

    /// A bounded `PING`: an idle session's check that Redis still answers.
    pub(super) async fn ping(&self, connection: &mut MultiplexedConnection) -> Result<(), ClusterError> {
        let ping = redis::cmd("PING");
        self.bounded("PING", ping.query_async::<String>(connection))
            .await
            .map(|_| ())
    }
}

/// The next published message; an error once the subscription's connection closed.
pub(super) async fn next_message(messages: &mut Messages) -> Result<redis::Msg, ClusterError> {
    messages.next().await.ok_or_else(|| {
        ClusterError::Redis(redis::RedisError::from((
            redis::ErrorKind::Io,
            "subscription connection closed",
        )))
    })
}

/// After a session ended: false when it ended because the server stops (`Ok`); after a loss of Redis
/// (logged with `lost`) true once `retry` has passed (false if the server stops meanwhile).
pub(super) async fn again(
    ended: Result<(), ClusterError>,
    retry: Duration,
    stopped: &mut watch::Receiver<bool>,
    lost: &str,
) -> bool {
    let Err(error) = ended else {
        return false;
    };
    tracing::warn!(%error, "{lost}");
    tokio::select! {
        () = tokio::time::sleep(retry) => true,
        _ = stopped.wait_for(|stop| *stop) => false,
    }
}
