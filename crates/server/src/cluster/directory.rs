//! The cluster's name directory in Redis: atomic leases with fencing epochs.
//!
//! One hash per name, `lt:name:<name>`, with the fields
//! `node` (the owning node's id), `epoch` (from the cluster-wide counter `lt:epoch`,
//! new at every change of owner), `rt` and `at` (hex SHA-256 digests of the owner's
//! reconnect token and auth token), `exp` (when the lease ends, in Redis's own
//! milliseconds) and `hold` (0 while the session is live; else when its grace hold ends).
//! Every change is one Lua script, so it is atomic in Redis; the node's own clock
//! decides when it stops serving (see [`super::ClusterRegistry`]).

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

/// The pub/sub channel on which a node is told that a name it held moved on:
/// `<old node id>\n<name>\n<old epoch>`.
pub const TAKEOVER_CHANNEL: &str = "lt:takeover";
const EPOCH_KEY: &str = "lt:epoch";
/// The nodes that reported in the last lease TTL, scored by when their report expires.
const MEMBERS_KEY: &str = "lt:members";
/// Each reporting node's live names.
const COUNTS_KEY: &str = "lt:counts";

/// Take a name: free, proven by the reconnect token (any time) or by the auth token
/// (once the owner's session ended), or hand it back to its own node to decide.
/// Returns `{0}` taken, `{1, epoch}` granted with a new epoch, `{2, epoch, proven}` the
/// record is this node's: the local registry decides with the full proof (or, when it
/// has no entry, e.g. a restarted process with the same node id, `proven` does).
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node, rt, at = ARGV[1], ARGV[2], ARGV[3]
local ttl, grace = tonumber(ARGV[4]), tonumber(ARGV[5])
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch', 'rt', 'at', 'exp', 'hold')
if cur[1] then
  local exp = tonumber(cur[5]) or 0
  local hold = tonumber(cur[6]) or 0
  local ended = hold > 0 or exp < now
  local free_at = exp + grace
  if hold > 0 then free_at = hold end
  local free = now >= free_at
  local by_rt = rt ~= '' and rt == cur[3]
  local by_at = at ~= '' and at == cur[4] and ended
  if cur[1] == node and not free then
    local proven = 0
    if by_rt or by_at then proven = 1 end
    return {2, tonumber(cur[2]) or 0, proven}
  end
  if not (free or by_rt or by_at) then
    return {0}
  end
  if cur[1] ~= node then
    redis.call('PUBLISH', ARGV[6], cur[1] .. '\n' .. ARGV[7] .. '\n' .. (cur[2] or '0'))
  end
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'node', node, 'epoch', epoch, 'exp', now + ttl, 'hold', 0)
redis.call('PEXPIRE', KEYS[1], ttl + grace)
return {1, epoch}
";

/// Renew this node's leases on the names KEYS[1..n] (compare node and epoch; KEYS[n+1]
/// is the epoch counter) and store the current secrets' digests; re-create a record
/// Redis lost (restarted empty). ARGV: node, ttl, grace, then epoch, rt, at per name.
/// Returns one 1 per name still ours, 0 for one that is no longer ours at that epoch.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node = ARGV[1]
local ttl, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
local epochs = KEYS[#KEYS]
local out = {}
for i = 1, #KEYS - 1 do
  local epoch, rt, at = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  local cur = redis.call('HMGET', KEYS[i], 'node', 'epoch')
  local ours = 1
  if cur[1] then
    if cur[1] ~= node or cur[2] ~= epoch then ours = 0 end
  elseif tonumber(redis.call('GET', epochs) or '0') < tonumber(epoch) then
    redis.call('SET', epochs, epoch)
  end
  if ours == 1 then
    redis.call('HSET', KEYS[i], 'node', node, 'epoch', epoch, 'rt', rt, 'at', at, 'exp', now + ttl, 'hold', 0)
    redis.call('PEXPIRE', KEYS[i], ttl + grace)
  end
  out[i] = ours
end
return out
";

/// The cluster's census: records that node ARGV[1] is alive for ARGV[3] ms more with
/// ARGV[2] live names (KEYS[1]: members by expiry, KEYS[2]: their counts), forgets
/// members that stopped reporting, and returns `{nodes, live names}` across the cluster.
const CENSUS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[2])) do total = total + (tonumber(n) or 0) end
return {redis.call('ZCARD', KEYS[1]), total}
";

/// Names renewed per script call of a round (a round sends them all in one pipeline):
/// bounds how long one call keeps Redis busy.
const RENEW_BATCH: usize = 256;

/// End this node's lease (compare node and epoch): ARGV[3] > 0 holds the name for
/// that many milliseconds (grace), 0 deletes it. Returns 1 when it was ours.
const END: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
local grace = tonumber(ARGV[3])
if grace > 0 then
  redis.call('HSET', KEYS[1], 'hold', now + grace)
  redis.call('PEXPIRE', KEYS[1], grace)
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// The URL of the node serving a live name, unless it is this node (ARGV[1]).
const OWNER: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'node', 'hold')
if not cur[1] or cur[1] == ARGV[1] or (tonumber(cur[2]) or 0) > 0 then return false end
return redis.call('GET', 'lt:node:' .. cur[1])
";

/// What [`Directory::acquire`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// Live or held for another client somewhere in the cluster.
    Taken,
    /// Ours at this new epoch.
    Granted(u64),
    /// The record is this node's (at this epoch): the local registry decides; the
    /// flag says whether the proof matched the digests in Redis.
    Local(u64, bool),
}

/// One lease to renew: the name, its epoch and its session's token digests.
#[derive(Debug, Clone, Copy)]
pub struct Renewal<'a> {
    pub name: &'a str,
    pub epoch: u64,
    pub rt: &'a str,
    pub at: &'a str,
}

/// What a renewal round found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Per lease, in order: still this node's (renewed), or not (fenced).
    pub ours: Vec<bool>,
    /// Nodes that reported within the lease TTL, this one included.
    pub nodes: u64,
    /// Live names across those nodes, as each last reported.
    pub live: u64,
}

/// The directory: a connection manager (reconnects by itself) and the scripts.
#[derive(Clone)]
pub struct Directory {
    conn: ConnectionManager,
    node: String,
    ttl_ms: u64,
    grace_ms: u64,
    acquire: Script,
    renew: Script,
    end: Script,
    owner: Script,
    census: Script,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("node", &self.node).field("ttl_ms", &self.ttl_ms).finish_non_exhaustive()
    }
}

fn key(name: &str) -> String {
    format!("lt:name:{name}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Directory {
    /// A directory for node `node` over `conn`, with leases of `ttl` and grace holds of `grace`.
    pub fn new(conn: ConnectionManager, node: String, ttl: Duration, grace: Duration) -> Self {
        Directory {
            conn,
            node,
            ttl_ms: millis(ttl),
            grace_ms: millis(grace),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            end: Script::new(END),
            owner: Script::new(OWNER),
            census: Script::new(CENSUS),
        }
    }

    /// Tries to take `name`, proven by the digests `rt` and `at` (hex, or empty).
    pub async fn acquire(&self, name: &str, rt: &str, at: &str) -> redis::RedisResult<Acquired> {
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = self
            .acquire
            .key(key(name))
            .key(EPOCH_KEY)
            .arg(&self.node)
            .arg(rt)
            .arg(at)
            .arg(self.ttl_ms)
            .arg(self.grace_ms)
            .arg(TAKEOVER_CHANNEL)
            .arg(name)
            .invoke_async(&mut conn)
            .await?;
        Ok(match reply.as_slice() {
            [1, epoch] => Acquired::Granted(*epoch),
            [2, epoch, proven] => Acquired::Local(*epoch, *proven == 1),
            _ => Acquired::Taken,
        })
    }

    /// Renews this node's lease on `name` at `epoch`, storing the secrets' digests.
    /// `Ok(false)`: the name is no longer ours (fenced).
    pub async fn renew(&self, name: &str, epoch: u64, rt: &str, at: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let ours: Vec<u8> = self.renew_batch(&[Renewal { name, epoch, rt, at }]).invoke_async(&mut conn).await?;
        Ok(ours.first() == Some(&1))
    }

    /// One renewal round in one round trip: this node's URL (`url`), every lease in
    /// `leases` (batches of [`RENEW_BATCH`] names per script call, all in one
    /// pipeline), and the census with `live` names here.
    pub async fn renew_round(
        &self,
        url: Option<&str>,
        leases: &[Renewal<'_>],
        live: usize,
    ) -> redis::RedisResult<Round> {
        let mut pipe = redis::pipe();
        // A script Redis does not have (restarted empty) would fail the round: load
        // them first, in the same round trip (a no-op when they are cached).
        pipe.cmd("SCRIPT").arg("LOAD").arg(RENEW).ignore();
        pipe.cmd("SCRIPT").arg("LOAD").arg(CENSUS).ignore();
        if let Some(url) = url {
            pipe.cmd("SET").arg(self.node_key()).arg(url).arg("PX").arg(self.ttl_ms.saturating_mul(3)).ignore();
        }
        let batches: Vec<_> = leases.chunks(RENEW_BATCH).map(|b| self.renew_batch(b)).collect();
        for b in &batches {
            pipe.invoke_script(b);
        }
        let mut census = self.census.prepare_invoke();
        census.key(MEMBERS_KEY).key(COUNTS_KEY).arg(&self.node).arg(live).arg(self.ttl_ms);
        pipe.invoke_script(&census);
        let mut conn = self.conn.clone();
        let mut replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let census = replies.pop().map(redis::from_redis_value::<(u64, u64)>).transpose()?.unwrap_or_default();
        let mut ours = Vec::with_capacity(leases.len());
        for reply in replies {
            ours.extend(redis::from_redis_value::<Vec<u8>>(reply)?.into_iter().map(|o| o == 1));
        }
        Ok(Round { ours, nodes: census.0, live: census.1 })
    }

    /// The script call renewing `batch`.
    fn renew_batch(&self, batch: &[Renewal<'_>]) -> redis::ScriptInvocation<'_> {
        let mut call = self.renew.prepare_invoke();
        call.arg(&self.node).arg(self.ttl_ms).arg(self.grace_ms);
        for r in batch {
            call.key(key(r.name)).arg(r.epoch).arg(r.rt).arg(r.at);
        }
        call.key(EPOCH_KEY);
        call
    }

    fn node_key(&self) -> String {
        format!("lt:node:{}", self.node)
    }

    /// Ends this node's lease on `name` at `epoch`: into a grace hold (`hold`), or freed.
    pub async fn end(&self, name: &str, epoch: u64, hold: bool) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let grace = if hold { self.grace_ms } else { 0 };
        let ours: u8 = self.end.key(key(name)).arg(&self.node).arg(epoch).arg(grace).invoke_async(&mut conn).await?;
        Ok(ours == 1)
    }

    /// The URL of the node serving `name` live, unless none or this node does.
    pub async fn owner_url(&self, name: &str) -> redis::RedisResult<Option<String>> {
        let mut conn = self.conn.clone();
        self.owner.key(key(name)).arg(&self.node).invoke_async(&mut conn).await
    }
}
