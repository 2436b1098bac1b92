-- wrk script for the chain benchmark: POST the body in $BENCH_BODY (a file)
-- as JSON to the URL's path. wrk counts non-2xx answers itself.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
