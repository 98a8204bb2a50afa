-- wrk script for bench/run.py --external: the refresh chain. Every response's refresh token is
-- the one a later request sends, so each token is used exactly once, as a client would.
-- BENCH_TOKENS: comma-separated unspent refresh tokens, at least as many as connections per
-- thread (run.py's {refresh_tokens} holds 32). Use one wrk thread (-t1): tokens are per thread.
-- wrk -t1 -c8 -d5s -s bench/wrk/refresh.lua http://127.0.0.1:PORT/api/v1/auth/refresh
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  tokens[#tokens + 1] = token
end

local failed = 0

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
    io.stderr:write("refresh failed: status " .. status .. "\n")
  end
end

function done(summary, latency, requests)
  io.write(string.format("refresh chain: %d failed responses\n", failed))
end
