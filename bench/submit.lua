-- wrk script: POST the captured submission with a fresh report GUID per request.
-- BODY_FILE, SUBMIT_PATH and AUTH come from the environment (set by bench/intake.py).
local counter = 0
local thread_index = 0
local threads = {}

function setup(thread)
  thread:set("id", thread_index)
  thread_index = thread_index + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
  body = f:read("*a")
  f:close()
  original = os.getenv("ORIGINAL_GUID")
  path = os.getenv("SUBMIT_PATH")
  headers = {
    ["Authorization"] = os.getenv("AUTH"),
    ["Content-Type"] = "application/octet-stream",
    ["Content_Type"] = "application/json",
    ["Accept"] = "application/json",
  }
  run_id = tonumber(os.getenv("RUN_ID"))
end

function request()
  counter = counter + 1
  local guid = string.format("%08x-%04x-4%03x-8%03x-%012x", run_id, id, 0, 0, counter)
  local fresh = body:gsub(original, guid)
  return wrk.format("POST", path, headers, fresh)
end
