-- wrk script for bench/run.py --external and --crosscheck: POST a form body with an
-- Authorization header. BENCH_AUTH: the header value; BENCH_BODY: the form body.
-- wrk -t1 -c8 -d5s -s bench/wrk/post.lua http://127.0.0.1:PORT/oauth/token
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

-- Counted in each thread's own Lua state; done() runs in another, so it asks every thread.
failed = 0
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("failed")
  end
  io.write(string.format("post: %d failed responses\n", total))
end
