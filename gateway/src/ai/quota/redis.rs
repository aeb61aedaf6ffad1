//! Quota counters in Redis, shared by every replica that names the same server.
//!
//! Each bucket is two keys, this window's count and the last one's
//! (`weir:quota:<bucket>:<window>`), expiring two windows after they were last written. One
//! Lua script checks every bucket of a request and reserves in all of them or none, so
//! admission is atomic across replicas as it is within one. Every bucket of a request carries
//! the client key in its `{hash tag}`, so a request's keys share a Redis Cluster slot.
//!
//! Windows are computed from this replica's clock; replicas are expected to keep theirs in sync
//! (NTP), a skew only shifting where a window starts.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};

use super::{Check, QuotaError, Verdict, window::Counts};

/// Checks every bucket, then reserves in all of them if all fit.
///
/// `KEYS`: per bucket, this window's key then the last window's.
/// `ARGV`: per bucket, limit, cost, kind (`t` or `r`), the last window's weight, and the
/// expiry in milliseconds.
/// Returns `{admitted (0|1), current₁, previous₁, current₂, …}` as they were before.
const RESERVE: &str = r#"
local n = #KEYS / 2
local reply = {1}
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  reply[2 * i] = current
  reply[2 * i + 1] = previous
  local a = (i - 1) * 5
  local limit, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local used = previous * tonumber(ARGV[a + 4]) + current
  if ARGV[a + 3] == 't' then
    if used >= limit then reply[1] = 0 end
  elseif used + cost > limit then
    reply[1] = 0
  end
end
if reply[1] == 1 then
  for i = 1, n do
    local a = (i - 1) * 5
    redis.call('INCRBY', KEYS[2 * i - 1], ARGV[a + 2])
    redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[a + 5])
  end
end
return reply
"#;

/// Corrects a reservation, if its window's key still exists.
const SETTLE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return 0
"#;

/// A connection to the shared store; cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    reserve: std::sync::Arc<Script>,
    settle: std::sync::Arc<Script>,
}

impl RedisStore {
    /// A store for `url` (`redis://`, `rediss://`, `unix://`). Connects lazily, and reconnects
    /// by itself: a replica starts, and keeps serving, while Redis is away.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisStore, QuotaError> {
        let client =
            redis::Client::open(url).map_err(|error| QuotaError::Url(error.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| QuotaError::Url(error.to_string()))?;
        Ok(RedisStore {
            connection,
            reserve: std::sync::Arc::new(Script::new(RESERVE)),
            settle: std::sync::Arc::new(Script::new(SETTLE)),
        })
    }

    pub async fn reserve(&self, checks: &[Check], now_ms: u64) -> Result<Verdict, QuotaError> {
        let mut invocation = self.reserve.prepare_invoke();
        for check in checks {
            let window = check.window(now_ms);
            invocation
                .key(key(&check.bucket, window.index))
                .key(key(&check.bucket, window.index.wrapping_sub(1)));
        }
        for check in checks {
            let window = check.window(now_ms);
            invocation
                .arg(check.limit)
                .arg(check.cost)
                .arg(match check.kind {
                    super::Kind::Tokens => "t",
                    super::Kind::Requests => "r",
                })
                .arg(window.previous_weight())
                .arg(window.per_ms.saturating_mul(2));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<u64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| QuotaError::Store(error.to_string()))?;
        let admitted = reply.first() == Some(&1);
        let counts = reply[1..]
            .chunks_exact(2)
            .map(|pair| Counts {
                current: pair[0],
                previous: pair[1],
            })
            .collect::<Vec<_>>();
        if counts.len() != checks.len() {
            return Err(QuotaError::Store(format!(
                "the reserve script answered {} counts for {} buckets",
                counts.len(),
                checks.len()
            )));
        }
        Ok(Verdict { admitted, counts })
    }

    pub async fn settle(&self, bucket: &str, index: u64, delta: i64) -> Result<(), QuotaError> {
        let mut connection = self.connection.clone();
        self.settle
            .key(key(bucket, index))
            .arg(delta)
            .invoke_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(|error| QuotaError::Store(error.to_string()))
    }
}

fn key(bucket: &str, index: u64) -> String {
    format!("weir:quota:{bucket}:{index}")
}
