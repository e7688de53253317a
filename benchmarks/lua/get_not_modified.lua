-- GET with the API key from BENCH_API_KEY and If-None-Match from BENCH_ETAG, so a
-- current ETag is answered with 304 and no body. Prints how many answers were not
-- 304 (a 200 with the whole snapshot would measure something else).
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
wrk.headers["If-None-Match"] = os.getenv("BENCH_ETAG")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  not_modified = 0
  other = 0
end

function response(status, headers, body)
  if status == 304 then
    not_modified = not_modified + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local not_modified_total, other_total = 0, 0
  for _, thread in ipairs(threads) do
    not_modified_total = not_modified_total + thread:get("not_modified")
    other_total = other_total + thread:get("other")
  end
  io.write(string.format("Answers 304: %d, other: %d\n", not_modified_total, other_total))
end
