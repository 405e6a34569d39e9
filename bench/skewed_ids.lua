-- wrk script: a skewed read load. A share HOT_SHARE (default 0.9) of the
-- requests GET one of the ids in HOT_FILE (bench/big puts 5,000 random
-- stored ids there), the rest one of the ids in IDS_FILE, uniformly.
-- IDS_FILE stands for "all ids": bench/big fills it with a uniform random
-- sample of the stored ids (TABLESAMPLE BERNOULLI, 200,000 of them by
-- default), large enough that the uniform requests of a 10 s run (about a
-- tenth of them) rarely ask for an id twice, so they miss the cache about
-- as often as requests spread over every stored order would.
local function read(path)
  local ids = {}
  for line in io.lines(path) do ids[#ids + 1] = line end
  assert(#ids > 0, path .. " holds no ids")
  return ids
end
local hot = read(os.getenv("HOT_FILE"))
local all = read(os.getenv("IDS_FILE"))
local share = tonumber(os.getenv("HOT_SHARE") or "0.9")
local prefix = os.getenv("PATH_PREFIX") or "/orders/"
math.randomseed(os.time())
request = function()
  local ids = math.random() < share and hot or all
  return wrk.format("GET", prefix .. ids[math.random(#ids)])
end
