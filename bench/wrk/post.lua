-- wrk script for bench/run.py --external and --crosscheck: POST a form body with an
-- Authorization header. BENCH_AUTH: the header value; BENCH_BODY: the form body;
-- BENCH_EXPECT (optional): text a good answer's body holds, spaces ignored ('"active":true':
-- an expired token is answered 200 {"active":false}, cheaply, and must count as a failure).
-- wrk -t1 -c8 -d5s -s bench/wrk/post.lua http://127.0.0.1:PORT/oauth/token
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "failures.lua")

local expect = os.getenv("BENCH_EXPECT") or ""

function response(status, headers, body)
  local compact = (string.gsub(body, " ", ""))
  if status ~= 200 or (expect ~= "" and not string.find(compact, expect, 1, true)) then
    failed = failed + 1
  end
end

done = failures_done("post")
