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

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "failures.lua")

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

done = failures_done("login")
