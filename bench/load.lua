-- wrk script for bench/router-load.sh: POSTs alert batches to the stackgen router or to Alertmanager.
--
-- Configured through the environment (wrk passes its environment to every thread's Lua state):
--   BENCH_FORMAT    webhook   Alertmanager webhook v4 notification (stackgen router, POST /api/v1/alertmanager)
--                   am        JSON array of postable alerts (Alertmanager, POST /api/v2/alerts)
--   BENCH_ALERTS    alerts per request body (default 1)
--   BENCH_BODIES    distinct bodies pre-built per thread, cycled in order (default 256)
--   BENCH_SERVICES  services (= alert groups) the bodies are spread over (default 16)
--   BENCH_TOKEN     if set, sent as "Authorization: Bearer <token>"
--   BENCH_RATE      if set (> 0), total requests/s to pace to (all threads together); unset = as fast as possible
--   BENCH_LABEL     free text copied into the result line
--   BENCH_ADDRS     if set, "host:port,host:port,...": wrk's threads are spread over these servers in turn
--                   (several router replicas under one load), instead of all going to the URL's host
--
-- Bodies: body j of a thread belongs to group (alertname=BenchAlert, service=svc-NN) with NN = j mod SERVICES, and
-- carries the members pod-<g> .. pod-<g+ALERTS-1> of that group, g = j div SERVICES. So successive notifications
-- of a group repeat ALERTS-1 members and add one new one; when the cycle wraps, everything is a repeat (or a
-- re-fire of a member that was absent). The set is bounded: SERVICES x (BODIES/SERVICES + ALERTS - 1) members.
-- Each member's fingerprint is a hash of its labels, so a repeat has the same fingerprint. Bodies are built once in
-- init(), so generating them costs the load generator nothing during the run.
--
-- Result: done() prints one line "BENCH_RESULT {json}" with requests, 2xx/non-2xx counts (counted in response()),
-- socket errors, duration, and latency percentiles in microseconds (wrk's latency:percentile()).

local format   = os.getenv("BENCH_FORMAT") or "webhook"
local n_alerts = tonumber(os.getenv("BENCH_ALERTS") or "1")
local n_bodies = tonumber(os.getenv("BENCH_BODIES") or "256")
local n_svc    = tonumber(os.getenv("BENCH_SERVICES") or "16")
local token    = os.getenv("BENCH_TOKEN") or ""
local rate     = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local label    = os.getenv("BENCH_LABEL") or ""

---------------------------------------------------------------------------------------------------------------
-- main Lua state: collect threads, merge their counters at the end

local threads = {}
local addrs_env = os.getenv("BENCH_ADDRS") or ""
local addrs = nil

function setup(thread)
   if addrs_env ~= "" then
      if addrs == nil then
         addrs = {}
         for hostport in string.gmatch(addrs_env, "[^,]+") do
            local host, port = hostport:match("^(.*):(%d+)$")
            addrs[#addrs + 1] = wrk.lookup(host, port)[1]
         end
      end
      thread.addr = addrs[(#threads % #addrs) + 1]
   end
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

---------------------------------------------------------------------------------------------------------------
-- helpers

-- FNV-1a 32-bit with LuaJIT's bit ops: h * 16777619 = h * 403 + (h << 24) (mod 2^32), exact in doubles.
local function fnv32(s, h)
   h = bit.tobit(h)
   for i = 1, #s do
      h = bit.bxor(h, s:byte(i))
      h = bit.tobit(h * 403 + bit.lshift(h, 24))
   end
   return h
end

local function fingerprint(key)
   return bit.tohex(fnv32(key, 0x811c9dc5)) .. bit.tohex(fnv32(key, 0x01000193))
end

-- JSON string literal (our values are plain ASCII; escape the two characters that need it anyway)
local function js(s)
   return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end

local function obj(pairs_list)
   local parts = {}
   for _, kv in ipairs(pairs_list) do
      parts[#parts + 1] = js(kv[1]) .. ":" .. js(kv[2])
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

local function iso(t)
   return os.date("!%Y-%m-%dT%H:%M:%S", t) .. ".000Z"
end

local GENERATOR = "http://prometheus.bench:9090/graph?g0.expr=sum%20by%20%28service%2C%20pod%29%20%28rate%28http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29%20%3E%200.05&g0.tab=1"

local function svc_name(svc)
   return string.format("svc-%02d", svc)
end

local function member_labels(svc, pod)
   -- sorted by name, as Alertmanager sends them
   return {
      {"alertname", "BenchAlert"},
      {"instance", string.format("10.%d.%d.%d:8080", svc % 250, math.floor(pod / 250) % 250, pod % 250)},
      {"job", "kubernetes-pods"},
      {"namespace", "bench"},
      {"pod", string.format("%s-%d", svc_name(svc), pod)},
      {"service", svc_name(svc)},
      {"severity", "critical"},
      {"team", "bench"},
   }
end

local function member_annotations(svc, pod)
   return {
      {"description", string.format("%s-%d is returning 5xx for more than 5%% of requests.", svc_name(svc), pod)},
      {"runbook_url", "https://runbooks.example/BenchAlert"},
      {"summary", svc_name(svc) .. " 5xx ratio above 5%"},
   }
end

local function fp_key(labels)
   local parts = {}
   for _, kv in ipairs(labels) do parts[#parts + 1] = kv[1] .. "=" .. kv[2] end
   return table.concat(parts, "\255")
end

-- one alert object as JSON, cached: the bodies share most of their members, so each is built once
local alert_cache = {}
local function alert_json(svc, pod, starts_at, ends_at_am)
   local key = svc .. ":" .. pod
   local cached = alert_cache[key]
   if cached then return cached end
   local labels = member_labels(svc, pod)
   local annotations = member_annotations(svc, pod)
   local a
   if format == "am" then
      a = "{" ..
         '"labels":' .. obj(labels) ..
         ',"annotations":' .. obj(annotations) ..
         ',"startsAt":' .. js(starts_at) ..
         ',"endsAt":' .. js(ends_at_am) ..
         ',"generatorURL":' .. js(GENERATOR) .. "}"
   else
      a = "{" ..
         '"status":"firing"' ..
         ',"labels":' .. obj(labels) ..
         ',"annotations":' .. obj(annotations) ..
         ',"startsAt":' .. js(starts_at) ..
         ',"endsAt":"0001-01-01T00:00:00Z"' ..
         ',"generatorURL":' .. js(GENERATOR) ..
         ',"fingerprint":' .. js(fingerprint(fp_key(labels))) .. "}"
   end
   alert_cache[key] = a
   return a
end

-- one body: group `svc`, members first_pod .. first_pod + n_alerts - 1
local function build_body(svc, first_pod, starts_at, ends_at_am)
   local alerts = {}
   for pod = first_pod, first_pod + n_alerts - 1 do
      alerts[#alerts + 1] = alert_json(svc, pod, starts_at, ends_at_am)
   end
   if format == "am" then
      return "[" .. table.concat(alerts, ",") .. "]"
   end
   local svc_s = svc_name(svc)
   -- commonLabels: the labels all members share (with one member, all of its labels)
   local common
   if n_alerts == 1 then
      common = member_labels(svc, first_pod)
   else
      common = {
         {"alertname", "BenchAlert"}, {"job", "kubernetes-pods"}, {"namespace", "bench"},
         {"service", svc_s}, {"severity", "critical"}, {"team", "bench"},
      }
   end
   local common_ann
   if n_alerts == 1 then
      common_ann = member_annotations(svc, first_pod)
   else
      common_ann = {{"runbook_url", "https://runbooks.example/BenchAlert"}, {"summary", svc_s .. " 5xx ratio above 5%"}}
   end
   return "{" ..
      '"receiver":"stackgen-router"' ..
      ',"status":"firing"' ..
      ',"alerts":[' .. table.concat(alerts, ",") .. "]" ..
      ',"groupLabels":' .. obj({{"alertname", "BenchAlert"}, {"service", svc_s}}) ..
      ',"commonLabels":' .. obj(common) ..
      ',"commonAnnotations":' .. obj(common_ann) ..
      ',"externalURL":"http://alertmanager.bench:9093"' ..
      ',"version":"4"' ..
      ',"groupKey":' .. js('{}:{alertname="BenchAlert", service="' .. svc_s .. '"}') ..
      ',"truncatedAlerts":0' ..
      "}\n"
end

---------------------------------------------------------------------------------------------------------------
-- per-thread state

-- counters are globals: done() reads them from each thread with thread:get()
local requests = {}
local next_req = 1
ok_2xx, non_2xx = 0, 0
statuses = {}            -- non-2xx status -> count
first_bad_body = nil     -- first non-2xx status and body, for the log

-- pacing (only when BENCH_RATE > 0): absolute schedule, one slot every `interval_ms` per thread
local ffi_ok, ffi = pcall(require, "ffi")
local now_ms
if rate > 0 then
   assert(ffi_ok, "BENCH_RATE needs LuaJIT's ffi")
   ffi.cdef[[
      typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
      int clock_gettime(int clk_id, bench_timespec *tp);
   ]]
   local ts = ffi.new("bench_timespec")
   now_ms = function()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
   end
end
local interval_ms, next_slot

function init(args)
   local tid = thread_id or 0
   local headers = {["Content-Type"] = "application/json"}
   if token ~= "" then headers["Authorization"] = "Bearer " .. token end
   local path = wrk.path
   local now = os.time()
   local starts_at = iso(now - 60)
   local ends_at_am = iso(now + 3600)
   for j = 0, n_bodies - 1 do
      -- threads start at different points of the same bounded cycle
      local k = (j + tid * math.floor(n_bodies / 2)) % n_bodies
      local svc = k % n_svc
      local gen = math.floor(k / n_svc)
      requests[#requests + 1] = wrk.format("POST", path, headers, build_body(svc, gen, starts_at, ends_at_am))
   end
   if rate > 0 then
      local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
      interval_ms = 1000.0 * nthreads / rate
   end
end

function request()
   local r = requests[next_req]
   next_req = next_req + 1
   if next_req > #requests then next_req = 1 end
   return r
end

if rate > 0 then
   function delay()
      local now = now_ms()
      if next_slot == nil then next_slot = now end
      local slot = next_slot
      next_slot = next_slot + interval_ms
      local d = slot - now
      if d <= 0 then return 0 end
      return math.floor(d + 0.5)
   end
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok_2xx = ok_2xx + 1
   else
      non_2xx = non_2xx + 1
      statuses[status] = (statuses[status] or 0) + 1
      if first_bad_body == nil then first_bad_body = tostring(status) .. " " .. string.sub(body or "", 1, 300) end
   end
end

---------------------------------------------------------------------------------------------------------------
-- back in the main state

function done(summary, latency, _requests)
   local ok, bad = 0, 0
   local by_status = {}
   local sample = nil
   for _, t in ipairs(threads) do
      ok = ok + (t:get("ok_2xx") or 0)
      bad = bad + (t:get("non_2xx") or 0)
      local st = t:get("statuses")
      if type(st) == "table" then
         for k, v in pairs(st) do by_status[tostring(k)] = (by_status[tostring(k)] or 0) + v end
      end
      sample = sample or t:get("first_bad_body")
   end
   local st_parts = {}
   for k, v in pairs(by_status) do st_parts[#st_parts + 1] = js(k) .. ":" .. tostring(v) end
   local dur_s = summary.duration / 1e6
   if bad > 0 then
      io.stderr:write(string.format("NON-2XX: %d responses were not 2xx (by status: %s); first: %s\n",
         bad, table.concat(st_parts, ","), sample or "?"))
   end
   local e = summary.errors
   print("BENCH_RESULT {" ..
      '"label":' .. js(label) ..
      ',"format":' .. js(format) ..
      ',"alerts_per_request":' .. n_alerts ..
      ',"threads":' .. #threads ..
      ',"rate_target":' .. rate ..
      ',"duration_s":' .. string.format("%.3f", dur_s) ..
      ',"requests":' .. summary.requests ..
      ',"ok_2xx":' .. ok ..
      ',"non_2xx":' .. bad ..
      ',"non_2xx_by_status":{' .. table.concat(st_parts, ",") .. "}" ..
      ',"errors_connect":' .. e.connect ..
      ',"errors_read":' .. e.read ..
      ',"errors_write":' .. e.write ..
      ',"errors_timeout":' .. e.timeout ..
      ',"bytes":' .. summary.bytes ..
      ',"lat_mean_us":' .. string.format("%.1f", latency.mean) ..
      ',"lat_max_us":' .. latency.max ..
      ',"lat_p50_us":' .. latency:percentile(50) ..
      ',"lat_p90_us":' .. latency:percentile(90) ..
      ',"lat_p99_us":' .. latency:percentile(99) ..
      ',"lat_p999_us":' .. latency:percentile(99.9) ..
      "}")
end
