-- wrk script for the benchmark (bench/wrk.ts): counts every answer that is not exactly
-- `200 <expected body>` (the body comes as the first argument after `--`), and prints one line of
-- JSON at the end with the totals and the latency percentiles (µs), which bench/wrk.ts reads.
-- Headers (the session cookie, the bearer token) are given with -H.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expected = args[1] or "hello\n"
  bad = 0
  first = ""
end

function response(status, headers, body)
  if status ~= 200 or body ~= expected then
    bad = bad + 1
    if first == "" then
      first = tostring(status) .. " " .. string.sub(body or "", 1, 80)
    end
  end
end

local function quote(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local total_bad = 0
  local first_bad = ""
  for _, t in ipairs(threads) do
    total_bad = total_bad + t:get("bad")
    if first_bad == "" then first_bad = t:get("first") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"durationUs":%d,"bad":%d,"first":%s,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"timeouts":%d,"p50Us":%.0f,"p99Us":%.0f}\n',
    summary.requests, summary.duration, total_bad, quote(first_bad), e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
