-- PATCH /todos/{id} over the first 10 ids, toggling `completed`.
local n = 0
request = function()
  n = n + 1
  local body = '{"completed":' .. ((n % 2 == 0) and "true" or "false") .. '}'
  return wrk.format("PATCH", "/todos/" .. ((n % 10) + 1), { ["Content-Type"] = "application/json" }, body)
end
