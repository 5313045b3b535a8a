-- wrk script: GET a random category's top-100 list; paths come from the file named by the
-- environment variable TOP_PATHS (one path per line).
local paths = {}
for line in io.lines(os.getenv("TOP_PATHS")) do
  paths[#paths + 1] = line
end
math.randomseed(os.time())

request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end

done = function(summary, latency, requests)
  io.write(string.format("wrk_result requests=%d seconds=%.3f errors=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
