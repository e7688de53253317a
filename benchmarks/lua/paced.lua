-- A constant request rate for soaks (wrk itself sends as fast as it can).
--
-- Environment: BENCH_RATE (requests per second, all threads together; wrk is run
-- with -t1), BENCH_METHOD (GET or POST), BENCH_BODY_FILE (POST body, optional),
-- BENCH_API_KEY, BENCH_ETAG (If-None-Match, optional), BENCH_EXPECT (the one status
-- every answer must have, e.g. 200 or 304).
--
-- Pacing: delay() is called before every request; each call reserves the next slot
-- of a fixed schedule (one every 1/rate s) and waits until it is due. When the
-- server falls behind, slots are taken at once (no waiting) until the schedule is
-- met again; a backlog older than one second is dropped and counted as "behind", so
-- a slow minute does not turn into a burst. The clock is clock_gettime through
-- LuaJIT's ffi (wrk's Lua has no sub-second clock of its own).
--
-- done() prints one line the soak parses:
--   Paced: expected <n>, other <n>, behind_ms <n>, first_other <status>
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } soak_timespec;
int clock_gettime(int clock_id, soak_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("soak_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file then
  local file = assert(io.open(body_file, "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
local etag = os.getenv("BENCH_ETAG")
if etag then
  wrk.headers["If-None-Match"] = etag
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  interval_ms = 1000 / tonumber(os.getenv("BENCH_RATE"))
  expect = tonumber(os.getenv("BENCH_EXPECT"))
  next_slot = now_ms()
  expected = 0
  other = 0
  behind_ms = 0
  first_other = 0
end

function delay()
  local now = now_ms()
  if next_slot < now - 1000 then
    behind_ms = behind_ms + (now - 1000 - next_slot)
    next_slot = now - 1000
  end
  local wait = next_slot - now
  next_slot = next_slot + interval_ms
  if wait > 0 then
    return math.floor(wait)
  end
  return 0
end

function response(status, headers, body)
  if status == expect then
    expected = expected + 1
  else
    other = other + 1
    if first_other == 0 then
      first_other = status
    end
  end
end

function done(summary, latency, requests)
  local expected_total, other_total, behind_total, first = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    expected_total = expected_total + thread:get("expected")
    other_total = other_total + thread:get("other")
    behind_total = behind_total + thread:get("behind_ms")
    if first == 0 then
      first = thread:get("first_other")
    end
  end
  io.write(string.format(
    "Paced: expected %d, other %d, behind_ms %d, first_other %d\n",
    expected_total, other_total, math.floor(behind_total), first))
end
