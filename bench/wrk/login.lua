-- wrk script for bench/run.py --crosscheck: the password login, each request as the next of the
-- seeded users in turn (as bench/load.py's VUs each log in as their own user; one user from
-- every connection would run into the per-account login throttle).
-- BENCH_USERS: comma-separated usernames; BENCH_PASSWORD: their password.
-- wrk -t1 -c8 -d5s -s bench/wrk/login.lua http://127.0.0.1:PORT/api/v1/auth/login
local users = {}
for name in string.gmatch(os.getenv("BENCH_USERS") or "", "[^,]+") do
  users[#users + 1] = name
end
local password = os.getenv("BENCH_PASSWORD") or ""
local next_user = 0

-- Counted in each thread's own Lua state; done() runs in another, so it asks every thread.
failed = 0
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function request()
  next_user = next_user % #users + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"username":"' .. users[next_user] .. '","password":"' .. password .. '"}')
end

function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
    io.stderr:write("login failed: status " .. status .. " " .. string.sub(body, 1, 120) .. "\n")
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("failed")
  end
  io.write(string.format("login: %d failed responses\n", total))
end
