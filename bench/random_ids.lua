-- wrk script: GET <prefix><random id from the file in IDS_FILE>, with
-- `Authorization: Bearer $AUTH_TOKEN` when AUTH_TOKEN is set.
local ids = {}
local prefix = os.getenv("PATH_PREFIX") or "/orders/"
local token = os.getenv("AUTH_TOKEN")
local headers = nil
if token and token ~= "" then headers = { ["Authorization"] = "Bearer " .. token } end
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", prefix .. ids[math.random(#ids)], headers)
end
