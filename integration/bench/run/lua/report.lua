-- Prepended by the driver to every benchmark script. done() prints one
-- line, "WRKJSON {...}", that the driver parses: wrk's totals, its error
-- counters, latency percentiles (microseconds), and the per-thread global
-- table `counts` of scripts that classify answers, merged across threads.
local threads = {}

function setup(thread)
	table.insert(threads, thread)
end

function done(summary, latency, requests)
	local merged = {}
	for _, t in ipairs(threads) do
		local c = t:get("counts")
		if type(c) == "table" then
			for k, v in pairs(c) do
				merged[k] = (merged[k] or 0) + v
			end
		end
	end
	local parts = {}
	for k, v in pairs(merged) do
		parts[#parts + 1] = string.format('"%s":%d', k, v)
	end
	local e = summary.errors
	io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
		'"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
		'"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f,"counts":{%s}}\n',
		summary.requests, summary.duration, summary.bytes,
		e.connect, e.read, e.write, e.status, e.timeout,
		latency:percentile(50), latency:percentile(90), latency:percentile(99),
		latency.max, latency.mean, table.concat(parts, ",")))
end
