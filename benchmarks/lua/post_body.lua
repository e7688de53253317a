-- POST a JSON body read from the file named by BENCH_BODY_FILE, with the API key
-- from BENCH_API_KEY; wrk reports the latency distribution with --latency.
local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
