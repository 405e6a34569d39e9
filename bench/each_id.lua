-- wrk script: GET <prefix><id> for the ids in IDS_FILE in turn, so that no
-- id is asked for twice until the file has been gone through (then it
-- starts again). Made for one wrk thread (-t1): each thread walks the
-- file on its own.
local ids = {}
local prefix = os.getenv("PATH_PREFIX") or "/orders/"
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
assert(#ids > 0, "IDS_FILE holds no ids")
local next_id = 0
request = function()
  next_id = next_id % #ids + 1
  return wrk.format("GET", prefix .. ids[next_id])
end
