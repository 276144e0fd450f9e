-- wrk script of bench/outside.py: the access question for a random approved
-- email per request (Api-Key header), or a plain GET of the path (health).
--
--   wrk -s bench/wrk.lua http://127.0.0.1:8000/api/v1/access -- access EMAILS KEY
--   wrk -s bench/wrk.lua http://127.0.0.1:8000/api/v1/health -- plain
--   wrk -s bench/wrk.lua http://127.0.0.1:8000/api/v1/edge/verify -- verify TOKENS EDGE_KEY
--
-- verify: as an edge asks (bench/gate.py): X-Edge-Key and a random token of
-- the file as Authorization: Bearer.
--
-- Prints one line "WRK-JSON {...}" with requests, duration, errors and the
-- latency percentiles (microseconds), for bench/outside.py to read.

local emails = {} -- or tokens, in verify mode
local key = nil
local mode = "plain"

local threads = 0

-- In the main Lua state: number each thread, so each draws its own emails.
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

-- Per thread (each wrk thread has its own Lua state).
function init(args)
  mode = args[1] or "plain"
  if mode == "access" or mode == "verify" then
    for line in io.lines(args[2]) do
      if #line > 0 then
        emails[#emails + 1] = line
      end
    end
    key = args[3]
    math.randomseed(os.time() * 100 + id)
  end
end

function request()
  if mode == "verify" then
    return wrk.format("GET", wrk.path, {
      ["X-Edge-Key"] = key,
      ["Authorization"] = "Bearer " .. emails[math.random(#emails)],
    })
  end
  if mode ~= "access" then
    return wrk.format("GET", wrk.path)
  end
  local email = emails[math.random(#emails)]
  return wrk.format(
    "GET",
    wrk.path .. "?email=" .. email,
    { ["Authorization"] = "Api-Key " .. key, ["Accept"] = "application/json" }
  )
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"status_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max
  ))
end
