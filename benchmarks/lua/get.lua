-- A plain GET, no credentials: for the unauthenticated probes (/healthz).
wrk.method = "GET"
