-- wrk script for bench/run.py --external and --crosscheck: the refresh chain. Every response's
-- refresh token is the one a later request sends, so each token is used exactly once, as a
-- client would. BENCH_TOKENS: comma-separated unspent refresh tokens, MORE than the connections
-- per thread: wrk builds one request more than it sends (counted: 749 built, 716 answered,
-- 32 in flight), and a token short leaves a connection sending a dead one, answered 401 at a
-- fraction of a refresh's cost. run.py's {refresh_tokens} and --crosscheck hold twice as many.
-- Use one wrk thread (-t1): the tokens are per thread.
-- wrk -t1 -c8 -d5s -s bench/wrk/refresh.lua http://127.0.0.1:PORT/api/v1/auth/refresh
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  tokens[#tokens + 1] = token
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "failures.lua")

function request()
  local token = table.remove(tokens, 1)
  if token == nil then
    token = "exhausted-no-unspent-token-left-0000000000"
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = string.match(body, '"refresh_token":"([%w_%-]+)"')
  if status == 200 and token then
    tokens[#tokens + 1] = token
  else
    failed = failed + 1
    io.stderr:write("refresh failed: status " .. status .. " " .. string.sub(body, 1, 120) .. "\n")
  end
end

done = failures_done("refresh chain")
