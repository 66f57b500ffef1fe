// The Redis side of admission: one script per operation, so every check-and-reserve across
// all of a request's scopes is a single atomic step and N gateways share limits exactly.
// (Settles, which nobody waits for, go many to a script: each one is still applied whole.)
//
// Per scope, in order key → user → team → model → global, ARGV carries four limits
// (rpm, tpm, concurrency, budget in nano-USD; -1 = none) and KEYS carries, for each limit
// present:
//   rpm          HASH  a ring of 61 one-second buckets: field 'h' = newest second, 's' = sum,
//   tpm          HASH    fields '0'..'60' = the amount admitted in second (sec % 61)
//   concurrency  ZSET  member = reservation id, score = lease expiry
//   budget       ZSET  member = "id:nano",      score = lease expiry        + STRING running sum
//                HASH  spend of the current period {spent, alert:<threshold>}
// Rate windows are the memory store's algorithm (src/admission/memory.ts, RateWindow): an
// amount admitted in second s counts until the whole bucket has left the 60 s window, i.e.
// until (s + 61) s, so the ring's sum is never below what an exact log of (now-60 s, now]
// holds, and admitting only while sum + need <= limit never lets any 60 s window exceed the
// limit. Per admit that is one HMGET and two HINCRBY per rate limit, whatever the rate
// (a sorted-set log costs a trim, a count and an insert, and memory per request).
// Time comes from Redis (TIME), so gateways with skewed clocks still share one window.
// Every reservation has a lease: entries past it are dropped by the next script that looks,
// so a gateway that dies mid-request cannot hold a slot or a budget reservation forever.
// Money is integer nano-USD; string.format('%.0f') writes it back without the 14-digit
// rounding of Lua's tostring.

const PRELUDE = `
local W = 60000
-- Buckets per rate window and how long a ring outlives its newest second.
local B, RING_TTL = 61, 62000
local function fmt(x) return string.format('%.0f', x) end
local function amount(m) return tonumber(string.match(m, ':(%d+)$')) or 0 end
-- A count or nano-USD amount from ARGV: a non-negative integer below 2^53, else nil. The
-- gateway checks its amounts too; the store must never take inf or nan whoever sends them.
local function valid(x)
  local n = tonumber(x)
  if n and n >= 0 and n < 9007199254740992 and n == math.floor(n) then return n end
  return nil
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Drops the entries of a sum-tracked ZSET scored <= upto and keeps its sum right.
local function trim(z, s, upto)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', upto)
  local sum = tonumber(redis.call('GET', s) or '0')
  if #old > 0 then
    for i = 1, #old do sum = sum - amount(old[i]) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', upto)
    if sum < 0 or redis.call('ZCARD', z) == 0 then sum = 0 end
    redis.call('SET', s, fmt(sum), 'KEEPTTL')
  end
  return sum
end
-- Amounts go to Redis as fmt() strings or ARGV as given: Lua's number-to-string conversion
-- would write large integers as 1e+15, which HINCRBY refuses.
-- Moves ring z to second sec (never back: a failover to a server with a slower clock counts
-- into the newest bucket) and drops the buckets that left the window. Returns sum, second.
local function advance(z, sec)
  local v = redis.call('HMGET', z, 'h', 's')
  local h, s = tonumber(v[1]), tonumber(v[2]) or 0
  if h == nil or sec - h >= B then
    if h ~= nil then redis.call('DEL', z) end
    redis.call('HSET', z, 'h', sec, 's', 0)
    redis.call('PEXPIRE', z, RING_TTL)
    return 0, sec
  end
  if sec <= h then return s, h end
  local slots = {}
  for x = h + 1, sec do slots[#slots + 1] = x % B end
  local vals = redis.call('HMGET', z, unpack(slots))
  for i = 1, #vals do s = s - (tonumber(vals[i]) or 0) end
  if s < 0 then s = 0 end
  redis.call('HDEL', z, unpack(slots))
  redis.call('HSET', z, 'h', sec, 's', fmt(s))
  redis.call('PEXPIRE', z, RING_TTL)
  return s, sec
end
-- ms from now until need more fits under limit as the oldest buckets leave, one a second
-- (the moment a bucket stops counting, so never early); -1 if it never can.
local function retry_after(z, sec, now, sum, need, limit)
  if need > limit then return -1 end
  local slots = {}
  for k = 1, B do slots[k] = (sec + k) % B end
  local vals = redis.call('HMGET', z, unpack(slots))
  local left = sum
  for k = 1, B do
    left = left - (tonumber(vals[k]) or 0)
    if left + need <= limit then return (sec + k) * 1000 - now end
  end
  return (sec + B) * 1000 - now
end
-- Adds d to second sec's bucket if that bucket is still in the ring (a settle: estimate →
-- real tokens); once it has left the window there is nothing to adjust.
local function adjust(z, sec, d)
  local h = tonumber(redis.call('HGET', z, 'h'))
  if h == nil or sec > h or sec <= h - B or d == 0 then return end
  redis.call('HINCRBY', z, sec % B, fmt(d))
  local s = redis.call('HINCRBY', z, 's', fmt(d))
  if s < 0 then redis.call('HSET', z, 's', 0) end
end
`;

/**
 * ARGV: id, tokens, nano, lease_ms, concurrency_retry_ms, n, then n × (rpm, tpm, conc, budget).
 * Returns {ok, refused_scope (1-based), kind (1 rpm 2 tpm 3 conc 4 budget), retry_ms,
 *          req_limit, req_remaining, tok_limit, tok_remaining, spent, reserved,
 *          second counted in (when admitted), ...spent per budget scope}.
 */
export const ADMIT = `${PRELUDE}
local now = clock()
local sec = math.floor(now / 1000)
local id, need, usd, lease, cretry, n = ARGV[1], valid(ARGV[2]), valid(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if not need or not usd then return redis.error_reply('ERR invalid reservation amount') end
local ok, at, kind, retry, spentR, resR = 1, 0, 0, 0, 0, 0
local reqL, reqR, tokL, tokR = -1, 0, -1, 0
local spent = {}
-- The second each ring counts in (its head: never behind it).
local secs = {}
local k, a = 1, 7
for i = 1, n do
  local rpm, tpm, conc, bud = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  if rpm >= 0 then
    local z = KEYS[k]; k = k + 1
    local sum, at_sec = advance(z, sec)
    secs[z] = at_sec
    local rem = rpm - sum - 1
    if reqL < 0 or rem < reqR then reqL, reqR = rpm, rem end
    if rem < 0 and ok == 1 then ok, at, kind, retry = 0, i, 1, retry_after(z, at_sec, now, sum, 1, rpm) end
  end
  if tpm >= 0 then
    local z = KEYS[k]; k = k + 1
    local sum, at_sec = advance(z, sec)
    secs[z] = at_sec
    local rem = tpm - sum - need
    if tokL < 0 or rem < tokR then tokL, tokR = tpm, rem end
    if rem < 0 and ok == 1 then ok, at, kind, retry = 0, i, 2, retry_after(z, at_sec, now, sum, need, tpm) end
  end
  if conc >= 0 then
    local z = KEYS[k]; k = k + 1
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    if redis.call('ZCARD', z) >= conc and ok == 1 then ok, at, kind, retry = 0, i, 3, cretry end
  end
  if bud >= 0 then
    local rz, rs, sk = KEYS[k], KEYS[k + 1], KEYS[k + 2]; k = k + 3
    local reserved = trim(rz, rs, now)
    local sp = tonumber(redis.call('HGET', sk, 'spent') or '0')
    spent[#spent + 1] = sp
    if sp + reserved + usd > bud and ok == 1 then ok, at, kind, retry, spentR, resR = 0, i, 4, -1, sp, reserved end
  end
end
if ok == 0 then return {0, at, kind, retry, reqL, reqR, tokL, tokR, spentR, resR} end
k, a = 1, 7
-- The settle adjusts tokens in the bucket of this second: every ring is at it or (after a
-- clock step back) ahead; the newest head is what is returned and counted in.
local top = sec
for _, v in pairs(secs) do if v > top then top = v end end
for i = 1, n do
  local rpm, tpm, conc, bud = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  if rpm >= 0 then
    local z = KEYS[k]; k = k + 1
    redis.call('HINCRBY', z, secs[z] % B, 1)
    redis.call('HINCRBY', z, 's', 1)
  end
  if tpm >= 0 then
    local z = KEYS[k]; k = k + 1
    if need > 0 then
      redis.call('HINCRBY', z, secs[z] % B, ARGV[2])
      redis.call('HINCRBY', z, 's', ARGV[2])
    end
  end
  if conc >= 0 then
    local z = KEYS[k]; k = k + 1
    redis.call('ZADD', z, now + lease, id)
    redis.call('PEXPIRE', z, lease + 1000)
  end
  if bud >= 0 then
    local rz, rs = KEYS[k], KEYS[k + 1]; k = k + 3
    redis.call('ZADD', rz, now + lease, id .. ':' .. ARGV[3])
    redis.call('INCRBY', rs, ARGV[3])
    redis.call('PEXPIRE', rz, lease + 1000)
    redis.call('PEXPIRE', rs, lease + 1000)
  end
end
return {1, 0, 0, 0, reqL, reqR, tokL, tokR, 0, 0, top, unpack(spent)}
`;

/**
 * Grants quota leases (state.leased_quota): for each scope, a slice of what remains of each
 * of its limits, reserved exactly as admits of that size would be, which the gateway then
 * admits against locally until the end of the current Redis second. Counting a slice in this
 * second's bucket is what keeps rate windows exact: every request admitted against it starts
 * before the second ends, so the bucket (counted until the whole second has left the window)
 * covers it for at least 60 s. Slots are members id#1..id#s of the concurrency set; the budget
 * slice is one reservation member id:nano. Each scope is granted on its own: all of its
 * limits, or nothing. A slice is the wanted rate for what is left of the second (slots: the
 * wanted number), at most `frac` of what remains; a limit that cannot give at least one
 * request's worth grants nothing.
 * ARGV: id, keep_ms (expiry of slots and budget slice), min_left_ms, frac, n,
 *       n × (rpm, tpm, conc, budget, want_reqs/s, want_tokens/s, want_nano/s, min_tokens, min_nano, want_slots)
 * KEYS: per scope its keys as for ADMIT, then the lease's state hash.
 * Returns {now_ms, left_ms, then per scope: reqs, tokens, slots, nano (-1 = no such limit,
 *          all 0 = not granted), second counted in by rpm and by tpm, req_remaining,
 *          tok_remaining, spent (-1 = no budget)}.
 */
export const LEASE = `${PRELUDE}
local now = clock()
local sec = math.floor(now / 1000)
local left = (sec + 1) * 1000 - now
local id, keep, minleft, frac, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local f = left / 1000
local out = {now, left}
local k, a = 1, 6
for i = 1, n do
  local rpm, tpm, conc, bud = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local wr, wt, wn, mint, minn, ws = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8]), tonumber(ARGV[a + 9])
  a = a + 10
  local lid = id .. '.' .. i
  local ok = left >= minleft
  -- Each ring counts the slice at its own head (never behind the current second).
  local gr, gt, gs, gn, hr, ht, reqRem, tokRem, sp = -1, -1, -1, -1, sec, sec, -1, -1, -1
  local rz, tz, cz, bz, bs
  local want = math.ceil(wr * f)
  if rpm >= 0 then
    rz = KEYS[k]; k = k + 1
    local sum
    sum, hr = advance(rz, sec)
    gr = math.min(want, math.floor((rpm - sum) * frac))
    reqRem = rpm - sum
    if gr < 1 then ok = false end
  end
  if tpm >= 0 then
    tz = KEYS[k]; k = k + 1
    local sum
    sum, ht = advance(tz, sec)
    gt = math.min(math.ceil(wt * f), math.floor((tpm - sum) * frac))
    tokRem = tpm - sum
    if gt < mint or gt < 1 then ok = false end
  end
  if conc >= 0 then
    cz = KEYS[k]; k = k + 1
    redis.call('ZREMRANGEBYSCORE', cz, '-inf', now)
    -- Slots: as many as wanted (they are used again within the lease), not the second's share.
    gs = math.min(ws, math.floor((conc - redis.call('ZCARD', cz)) * frac))
    if gs < 1 then ok = false end
  end
  if bud >= 0 then
    bz, bs = KEYS[k], KEYS[k + 1]
    local reserved = trim(bz, bs, now)
    sp = tonumber(redis.call('HGET', KEYS[k + 2], 'spent') or '0')
    k = k + 3
    gn = math.min(math.ceil(wn * f), math.floor((bud - sp - reserved) * frac))
    if gn < minn or gn < 1 then ok = false end
  end
  local st = KEYS[k]; k = k + 1
  if not ok then
    out[#out + 1] = 0; out[#out + 1] = 0; out[#out + 1] = 0; out[#out + 1] = 0
  else
    if rz then
      redis.call('HINCRBY', rz, hr % B, gr)
      redis.call('HINCRBY', rz, 's', gr)
      reqRem = reqRem - gr
    end
    if tz then
      redis.call('HINCRBY', tz, ht % B, fmt(gt))
      redis.call('HINCRBY', tz, 's', fmt(gt))
      tokRem = tokRem - gt
    end
    if cz then
      for s = 1, gs do redis.call('ZADD', cz, now + keep, lid .. '#' .. s) end
      redis.call('PEXPIRE', cz, keep + 1000)
    end
    if bz then
      redis.call('ZADD', bz, now + keep, lid .. ':' .. fmt(gn))
      redis.call('INCRBY', bs, fmt(gn))
      redis.call('PEXPIRE', bz, keep + 1000)
      redis.call('PEXPIRE', bs, keep + 1000)
    end
    -- q: the last flush applied; the grant itself, for undoing it if its reply was lost.
    redis.call('HSET', st, 'q', 0, 'r', gr, 't', fmt(gt), 's', gs, 'n', fmt(gn), 'hr', hr, 'ht', ht)
    redis.call('PEXPIRE', st, keep + 60000)
    out[#out + 1] = gr; out[#out + 1] = gt; out[#out + 1] = gs; out[#out + 1] = gn
  end
  out[#out + 1] = hr; out[#out + 1] = ht; out[#out + 1] = reqRem; out[#out + 1] = tokRem; out[#out + 1] = sp
end
return out
`;

/**
 * Settles a batch of reservations, each in its own mode: 1 settles, 2 cancels (as if never
 * admitted), 3 only adds spend (spend made on the local fallback while Redis was down;
 * idempotent through its marker key). Modes 1 and 2 are idempotent: each concurrency and
 * budget entry is removed once; a retried settle (first = 0) commits spend only if it still
 * found its reservation. Rate windows are counters, which cannot tell a replay by
 * themselves: tokens move from the estimate to the real count on a first settle, or on a
 * replay that still finds its concurrency or budget entry; otherwise (a replay of a
 * reservation with neither, a cancel of an admit whose reply was lost) what the admit counted
 * stays until its bucket leaves the window, which can only refuse early, never over-admit
 * unless the real count exceeded the estimate.
 * One script for many: settles are batched off the request path (see RedisStore.settle).
 * ARGV: n_thresholds, thresholds..., n_ops, then per op:
 *       n_keys, id, mode, est_tokens, real_tokens, reserved_nano, cost_nano, first, second, n,
 *       n × (rpm, tpm, conc, budget, spend_expire_at_ms)
 *       (second: the one the admit counted tokens in, -1 if unknown)
 *       Mode 4 (a quota lease's flush, one scope) has its own layout after n_keys, id, mode:
 *       seq, first, rpm_second, tpm_second, requests_delta, tokens_delta, slots_freed ('3,5-9'),
 *       nano_held, nano_held_after, cost_nano, then the scope's (rpm, tpm, conc, budget, spend_expire_at_ms).
 * KEYS: per op, its scopes' keys as for ADMIT (n_keys of them), then, for mode 3 only, its
 *       marker, and for mode 4 the lease's state hash.
 * Returns, per op and per budget scope: spent after (-1 if nothing committed), bitmask of thresholds fired now.
 */
export const SETTLE = `${PRELUDE}
local nth = tonumber(ARGV[1])
local out = {}
-- Adds cost to a budget's spend; appends spent after and the thresholds fired now (bitmask) to out.
local function commit(sk, cost, exp, bud)
  local sp = tonumber(redis.call('HGET', sk, 'spent') or '0') + cost
  redis.call('HSET', sk, 'spent', fmt(sp))
  if exp > 0 then redis.call('PEXPIREAT', sk, exp) end
  local fired = 0
  if bud > 0 then
    for j = 1, nth do
      local th = ARGV[1 + j]
      if sp >= tonumber(th) * bud and redis.call('HSETNX', sk, 'alert:' .. th, '1') == 1 then fired = fired + 2 ^ (j - 1) end
    end
  end
  out[#out + 1] = sp
  out[#out + 1] = fired
end
local k, a = 1, nth + 3
for o = 1, tonumber(ARGV[nth + 2]) do
  if ARGV[a + 2] ~= '4' then
  local nk, id, mode, est, real, resv, cost, first, sec, n = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], tonumber(ARGV[a + 6]), ARGV[a + 7] == '1', tonumber(ARGV[a + 8]), tonumber(ARGV[a + 9])
  a = a + 10
  -- A real usage that is not a valid amount commits the reservation instead.
  local estN = valid(est) or 0
  local realN = valid(real) or estN
  cost = valid(cost) or valid(resv) or 0
  local nextK, nextA = k + nk, a + n * 5
  -- mode 3 runs once per id: a replay finds the marker and commits nothing.
  local skip = mode == 3 and not redis.call('SET', KEYS[nextK - 1], '1', 'NX', 'PX', 86400000)
  -- Tokens move from estimate to real once: on a first settle, or on a replay that still
  -- finds one of its concurrency or budget entries (which the settle that ran removed).
  local move = mode == 1 and sec >= 0 and first
  if mode == 1 and sec >= 0 and not first then
    local kk, aa = k, a
    for i = 1, n do
      local rpm, tpm, conc, bud = tonumber(ARGV[aa]), tonumber(ARGV[aa + 1]), tonumber(ARGV[aa + 2]), tonumber(ARGV[aa + 3])
      aa = aa + 5
      if rpm >= 0 then kk = kk + 1 end
      if tpm >= 0 then kk = kk + 1 end
      if conc >= 0 then
        if redis.call('ZSCORE', KEYS[kk], id) then move = true end
        kk = kk + 1
      end
      if bud >= 0 then
        if redis.call('ZSCORE', KEYS[kk], id .. ':' .. resv) then move = true end
        kk = kk + 3
      end
    end
  end
  for i = 1, n do
    local rpm, tpm, conc, bud, exp = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    a = a + 5
    if rpm >= 0 then k = k + 1 end
    if tpm >= 0 then
      local z = KEYS[k]; k = k + 1
      if move then adjust(z, sec, realN - estN) end
    end
    if conc >= 0 then
      local z = KEYS[k]; k = k + 1
      if mode ~= 3 then redis.call('ZREM', z, id) end
    end
    if bud >= 0 then
      local rz, rs, sk = KEYS[k], KEYS[k + 1], KEYS[k + 2]; k = k + 3
      local apply = mode == 3 and not skip or (mode == 1 and first)
      if mode ~= 3 and redis.call('ZREM', rz, id .. ':' .. resv) == 1 then
        local r = tonumber(redis.call('GET', rs) or '0') - tonumber(resv)
        if r < 0 or redis.call('ZCARD', rz) == 0 then r = 0 end
        redis.call('SET', rs, fmt(r), 'KEEPTTL')
        if mode == 1 then apply = true end
      end
      if apply and cost > 0 then commit(sk, cost, exp, bud) else out[#out + 1] = -1; out[#out + 1] = 0 end
    end
  end
  k, a = nextK, nextA
  else
    -- mode 4: a quota lease's changes since its last flush (see LEASE). The lease's state
    -- hash remembers the last flush applied, so a replayed one changes nothing twice.
    local seq, first, rsec, tsec = tonumber(ARGV[a + 3]), ARGV[a + 4] == '1', tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
    local reqD, tokD, slots, held, nheld, cost = tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8]), ARGV[a + 9], ARGV[a + 10], ARGV[a + 11], valid(ARGV[a + 12]) or 0
    local rpm, tpm, conc, bud, exp = tonumber(ARGV[a + 13]), tonumber(ARGV[a + 14]), tonumber(ARGV[a + 15]), tonumber(ARGV[a + 16]), tonumber(ARGV[a + 17])
    local nk, id = tonumber(ARGV[a]), ARGV[a + 1]
    local st = KEYS[k + nk - 1]
    local last = redis.call('HGET', st, 'q')
    -- A hash that expired (a flush more than 16 min after the last one): as for a settle whose
    -- reservation expired, only a first send applies (a replay may have been applied already).
    local fresh = (last and seq > tonumber(last)) or (not last and first)
    if slots == '*' then
      -- Undo a grant the gateway never heard of, if it was made and nothing flushed since.
      local g = redis.call('HMGET', st, 'r', 't', 's', 'n', 'hr', 'ht')
      fresh = last == '0' and g[5] ~= false
      slots = ''
      if fresh then
        rsec, tsec, reqD, tokD, held, nheld, cost = tonumber(g[5]), tonumber(g[6]), -tonumber(g[1]), -tonumber(g[2]), g[4], '0', 0
        if tonumber(g[3]) > 0 then slots = '1-' .. g[3] end
      end
    end
    if fresh then
      redis.call('HSET', st, 'q', seq)
      redis.call('PEXPIRE', st, 960000)
    end
    if rpm >= 0 then
      if fresh then adjust(KEYS[k], rsec, reqD) end
      k = k + 1
    end
    if tpm >= 0 then
      if fresh then adjust(KEYS[k], tsec, tokD) end
      k = k + 1
    end
    if conc >= 0 then
      -- Slots are members id#i; 'i-j' frees a range. Removing a member twice is harmless.
      for part in string.gmatch(slots, '[^,]+') do
        local x, y = string.match(part, '^(%d+)-(%d+)$')
        x, y = tonumber(x or part), tonumber(y or part)
        for s = x, y do redis.call('ZREM', KEYS[k], id .. '#' .. s) end
      end
      k = k + 1
    end
    if bud >= 0 then
      local rz, rs, sk = KEYS[k], KEYS[k + 1], KEYS[k + 2]
      k = k + 3
      if fresh and held ~= nheld then
        local old = id .. ':' .. held
        local score = redis.call('ZSCORE', rz, old)
        if score then
          redis.call('ZREM', rz, old)
          if tonumber(nheld) > 0 then redis.call('ZADD', rz, score, id .. ':' .. nheld) end
          local r = tonumber(redis.call('GET', rs) or '0') - tonumber(held) + tonumber(nheld)
          if r < 0 or redis.call('ZCARD', rz) == 0 then r = 0 end
          redis.call('SET', rs, fmt(r), 'KEEPTTL')
        end
      end
      if fresh and cost > 0 then commit(sk, cost, exp, bud) else out[#out + 1] = -1; out[#out + 1] = 0 end
    end
    k, a = k + 1, a + 18
  end
end
return out
`;

/**
 * Current usage for the admin API (drops expired entries on the way).
 * ARGV: n, n × (rpm, tpm, conc, budget). Returns per scope: rpm used, tpm used, in use, spent, reserved (-1 = n/a).
 */
export const INSPECT = `${PRELUDE}
local now = clock()
local sec = math.floor(now / 1000)
local n = tonumber(ARGV[1])
local out = {}
local k, a = 1, 2
for i = 1, n do
  local rpm, tpm, conc, bud = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  local r, t, c, sp, rv = -1, -1, -1, -1, -1
  if rpm >= 0 then r = advance(KEYS[k], sec); k = k + 1 end
  if tpm >= 0 then t = advance(KEYS[k], sec); k = k + 1 end
  if conc >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
    c = redis.call('ZCARD', KEYS[k]); k = k + 1
  end
  if bud >= 0 then
    rv = trim(KEYS[k], KEYS[k + 1], now)
    sp = tonumber(redis.call('HGET', KEYS[k + 2], 'spent') or '0')
    k = k + 3
  end
  out[#out + 1] = r; out[#out + 1] = t; out[#out + 1] = c; out[#out + 1] = sp; out[#out + 1] = rv
end
return out
`;

/** Zeroes a budget's current period (spend and fired alerts). KEYS[1] = spend hash. Returns the spend it had. */
export const RESET = `
local v = redis.call('HGET', KEYS[1], 'spent') or '0'
redis.call('DEL', KEYS[1])
return v
`;
