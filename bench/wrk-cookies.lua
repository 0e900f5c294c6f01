-- wrk script for the HTTP load tests (bench/redis.sh --http): every request carries the next
-- `Cookie` header value from a file (one per line, as `serve` writes them), rotating through
-- all of them, so the requests spread over many distinct sessions.
--
-- usage: wrk -t1 -cC -dDs -s bench/wrk-cookies.lua http://127.0.0.1:PORT/read -- COOKIES_FILE
--
-- Prints one `WRK key=value ...` line at the end (requests, non-2xx/3xx answers, socket
-- errors, latency percentiles in microseconds).

-- The requests are formatted once, in `init`, so that wrk spends as little as it can per request
-- (it shares a core with nothing else, but a slower load generator would cap every stack).

local requests = {}
local next_request = 0

function init(args)
  local file = args[1]
  if file == nil then
    error("usage: ... -s wrk-cookies.lua URL -- COOKIES_FILE")
  end
  for line in io.lines(file) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format(nil, nil, { ["Cookie"] = line })
    end
  end
  if #requests == 0 then
    error("no cookies in " .. file)
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d status_errors=%d connect_errors=%d read_errors=%d " ..
    "write_errors=%d timeouts=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
