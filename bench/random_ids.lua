-- wrk script: GET <prefix><random id from the file in IDS_FILE>.
local ids = {}
local prefix = os.getenv("PATH_PREFIX") or "/orders/"
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", prefix .. ids[math.random(#ids)])
end
