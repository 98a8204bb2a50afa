-- wrk script for bench/run.py --external: POST a form body with an Authorization header.
-- BENCH_AUTH: the header value; BENCH_BODY: the form body.
-- wrk -t1 -c8 -d5s -s bench/wrk/post.lua http://127.0.0.1:PORT/oauth/token
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

local failed = 0
function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  end
end
