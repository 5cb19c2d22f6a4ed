-- 70 % reads (GET /todos/{id} and GET /todos), 30 % writes (POST and PATCH).
local n = 0
request = function()
  n = n + 1
  local r = n % 10
  local json = { ["Content-Type"] = "application/json" }
  if r < 5 then
    return wrk.format("GET", "/todos/" .. ((n % 10) + 1))
  elseif r < 7 then
    return wrk.format("GET", "/todos")
  elseif r < 9 then
    return wrk.format("PATCH", "/todos/" .. ((n % 10) + 1), json, '{"completed":true}')
  else
    return wrk.format("POST", "/todos", json, '{"title":"mixed"}')
  end
end
