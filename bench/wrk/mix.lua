-- 70 % reads, 30 % writes: GET /todos/{id} (70), PATCH /todos/{id} (20), POST /todos (10).
-- Reads are of single todos so that the POSTs, which grow the store, do not change what a read
-- costs over the run.
local n = 0
request = function()
  n = n + 1
  local r = n % 10
  local id = (n % 10) + 1
  local json = { ["Content-Type"] = "application/json" }
  if r < 7 then
    return wrk.format("GET", "/todos/" .. id)
  elseif r < 9 then
    return wrk.format("PATCH", "/todos/" .. id, json, '{"completed":true}')
  else
    return wrk.format("POST", "/todos", json, '{"title":"mixed"}')
  end
end
