-- Shared by the wrk scripts here (loaded with dofile): a count of failed answers for done() to
-- print. Each wrk thread runs a script in its own Lua state and done() runs in another, so the
-- count is a global of each thread's state and done() asks every thread for it.
failed = 0
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

-- A done() that prints "<label>: N failed responses" (bench/crosscheck.py reads it).
function failures_done(label)
  return function(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do
      total = total + thread:get("failed")
    end
    io.write(string.format("%s: %d failed responses\n", label, total))
  end
end
