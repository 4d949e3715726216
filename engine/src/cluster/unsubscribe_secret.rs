//! The unsubscribe key shared by the nodes (`[cluster]`): every node signs one-click unsubscribe
//! links with the key in Redis (`penguin:secret:unsubscribe`, 64 hex digits), so a link made by one
//! node is verified by any.
//!
//! At start (bounded by `redis_timeout`) and at every reconnection of the suppression sync, a node
//! offers its key (`SET NX`: the fleet's cached key if it has one, else its own) and adopts the one
//! Redis holds, caching it in its spool (`meta` `unsubscribe-fleet`). While Redis is away at start,
//! the node signs with its own (or cached) key; it still verifies with its own key after adopting
//! the fleet's, so those links keep working on this node (other nodes do not know that key).

use std::sync::Arc;
use std::time::Duration;

use penguin_config::ClusterConfig;
use penguin_queue::Spool;
use redis::aio::MultiplexedConnection;

use super::ClusterError;
use crate::unsubscribe::{FLEET_SECRET_NAME, UnsubscribeTokens};

/// The fleet's unsubscribe key in Redis.
pub const UNSUBSCRIBE_SECRET_KEY: &str = "penguin:secret:unsubscribe";

/// Offers this node's signing key, reads the fleet's and adopts it (cached in the spool). Each
/// command is bounded by `after`.
pub(super) async fn share(
    connection: &mut MultiplexedConnection,
    after: Duration,
    spool: &Arc<Spool>,
    tokens: &UnsubscribeTokens,
) -> Result<(), ClusterError> {
    let offered = hex::encode(tokens.signing_key());
    let mut set = redis::cmd("SET");
    set.arg(UNSUBSCRIBE_SECRET_KEY).arg(offered).arg("NX");
    bounded("SET", after, set.query_async::<redis::Value>(connection)).await?;
    let fleet: Option<String> = bounded(
        "GET",
        after,
        redis::cmd("GET")
            .arg(UNSUBSCRIBE_SECRET_KEY)
            .query_async(connection),
    )
    .await?;
    let Some(fleet) = fleet.as_deref().and_then(parse_key) else {
        tracing::warn!(
            key = UNSUBSCRIBE_SECRET_KEY,
            "cluster: the fleet's unsubscribe key is not 64 hex digits; keeping this node's"
        );
        return Ok(());
    };
    if tokens.adopt(fleet) {
        tracing::info!("cluster: signing unsubscribe links with the fleet's key");
        let spool = Arc::clone(spool);
        let stored = tokio::task::spawn_blocking(move || spool.set_secret(FLEET_SECRET_NAME, fleet)).await;
        if let Ok(Err(error)) = stored {
            tracing::warn!(%error, "cannot cache the fleet's unsubscribe key; it is asked of Redis again at start");
        }
    }
    Ok(())
}

/// [`share`] once at start, on a connection of its own; on failure (Redis away) the node goes on
/// with the key it has, and the suppression sync shares it when Redis answers.
pub async fn share_at_start(config: &ClusterConfig, spool: &Arc<Spool>, tokens: &UnsubscribeTokens) {
    let after = config.redis_timeout.get();
    let attempt = async {
        let client = redis::Client::open(config.redis.as_str()).map_err(ClusterError::Url)?;
        let options = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let mut connection = bounded(
            "connect",
            after,
            client.get_multiplexed_async_connection_with_config(&options),
        )
        .await?;
        share(&mut connection, after, spool, tokens).await
    };
    if let Err(error) = attempt.await {
        tracing::warn!(%error, "cluster: cannot read the fleet's unsubscribe key at start; signing with this node's until Redis answers");
    }
}

/// 32 bytes from 64 hex digits.
fn parse_key(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

/// `call`, failing with a timeout after `after`.
async fn bounded<T>(
    what: &'static str,
    after: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(after, call).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(ClusterError::Timeout { what, after }),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_key;

    #[test]
    fn keys_are_64_hex_digits() {
        assert_eq!(parse_key(&"0a".repeat(32)), Some([10; 32]));
        assert_eq!(parse_key(&"0a".repeat(31)), None);
        assert_eq!(parse_key(&"zz".repeat(32)), None);
    }
}
