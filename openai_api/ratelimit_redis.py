"""Per-key rate limits counted in Redis, so every service instance sees the same windows.

The same sliding window log as `InProcessRateLimiter` (openai_api/ratelimit.py), kept in one
sorted set per key (score: the time, member: a unique id and the amount), and checked and counted
in one Lua script, atomically, on Redis's clock (instances' clocks may differ). Chosen when
REDIS_URL is set and RATE_LIMITER is left at its default.

With Redis unreachable, a key's limit cannot be checked: its requests get a 503
(`rate_limiter_unavailable`) rather than going through unlimited. Tokens of an answer already
given that cannot be counted are dropped, with a warning.
https://redis.io/docs/latest/develop/interact/programmability/eval-intro/
"""

from __future__ import annotations

import secrets

from llmservice.errors import SharedStoreUnavailable
from llmservice.redis_clients import tolerated

from .shared import redis_client

UNAVAILABLE = "The rate limiter cannot reach its store to check this API key's limits; retry shortly."

PREFIX = "llmservice:ratelimit:"

# KEYS[1]: the window's sorted set. ARGV: window (s), limit, amount, member id, count (1: count if it fits).
# Returns the seconds to wait as a string ("0": it fits, and was counted if asked to).
_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window, limit, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
if limit < 0 or used + amount <= limit then
  if ARGV[5] == '1' and amount > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. amount)
    redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  end
  return '0'
end
for i = 1, #entries, 2 do
  used = used - tonumber(string.match(entries[i], ':(%d+)$'))
  if used + amount <= limit then return tostring(math.max(0, tonumber(entries[i + 1]) + window - now)) end
end
return tostring(window)
"""


class RedisRateLimiter:
    """`RateLimiter` (openai_api/ratelimit.py) on Redis: shared by every instance."""

    async def _eval(self, key: str, *, limit: int, window: float, amount: int, count: bool) -> float:
        member = secrets.token_hex(6)
        wait = await redis_client().eval(_WINDOW, 1, PREFIX + key, window, limit, amount, member, "1" if count else "0")
        return float(wait)

    async def _run(self, key: str, *, limit: int, window: float, amount: int, count: bool) -> float:
        with tolerated("checking a key's rate limit"):  # logged here: the client hears no addresses
            return await self._eval(key, limit=limit, window=window, amount=amount, count=count)
        raise SharedStoreUnavailable(UNAVAILABLE)

    async def acquire(self, key: str, *, limit: int, window: float, amount: int = 1) -> float:
        return await self._run(key, limit=limit, window=window, amount=amount, count=True)

    async def wait_time(self, key: str, *, limit: int, window: float) -> float:
        return await self._run(key, limit=max(0, limit - 1), window=window, amount=0, count=False)

    async def record(self, key: str, *, amount: int, window: float) -> None:
        if amount > 0:
            with tolerated("counting a key's tokens"):  # the answer is given: not counting it is all we can do
                await self._eval(key, limit=-1, window=window, amount=amount, count=True)
