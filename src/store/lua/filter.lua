-- Payload filters (domain::PayloadFilter documents the language; Rust only
-- checks a filter, this is the one evaluator). Prepended to the scripts
-- that match events to endpoints.
local function f_get(doc, path)
  local cur = doc
  for part in string.gmatch(path, '[^.]+') do
    if type(cur) ~= 'table' then return nil end
    local v = cur[part]
    if v == nil then
      local n = tonumber(part)
      if n then v = cur[n + 1] end
    end
    cur = v
  end
  return cur
end

local function f_eq(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= 'table' then return a == b end
  for k, v in pairs(a) do if not f_eq(v, b[k]) then return false end end
  for k, _ in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function f_cmp(a, b, op)
  local ta = type(a)
  if ta ~= type(b) or (ta ~= 'number' and ta ~= 'string') then return false end
  if op == '$gt' then return a > b end
  if op == '$gte' then return a >= b end
  if op == '$lt' then return a < b end
  if op == '$lte' then return a <= b end
  return false
end

local function f_in(v, list)
  if type(list) ~= 'table' then return false end
  for _, x in ipairs(list) do if f_eq(v, x) then return true end end
  return false
end

local function f_is_ops(t)
  local any = false
  for k, _ in pairs(t) do
    if type(k) ~= 'string' or string.sub(k, 1, 1) ~= '$' then return false end
    any = true
  end
  return any
end

local f_node

local function f_cond(v, c)
  if type(c) ~= 'table' or #c > 0 then return f_eq(v, c) end
  if f_is_ops(c) then
    for op, x in pairs(c) do
      local ok
      if op == '$eq' then ok = f_eq(v, x)
      elseif op == '$neq' then ok = not f_eq(v, x)
      elseif op == '$in' then ok = f_in(v, x)
      elseif op == '$nin' then ok = not f_in(v, x)
      elseif op == '$exists' then ok = (v ~= nil) == x
      elseif op == '$startsWith' then ok = type(v) == 'string' and string.sub(v, 1, #x) == x
      elseif op == '$not' then ok = not f_cond(v, x)
      else ok = f_cmp(v, x, op) end
      if not ok then return false end
    end
    return true
  end
  if type(v) ~= 'table' then return false end
  return f_node(c, v)
end

f_node = function(filter, doc)
  for k, c in pairs(filter) do
    local ok
    if k == '$and' then
      ok = true
      for _, s in ipairs(c) do if not f_node(s, doc) then ok = false break end end
    elseif k == '$or' then
      ok = false
      for _, s in ipairs(c) do if f_node(s, doc) then ok = true break end end
    elseif k == '$not' then
      ok = not f_node(c, doc)
    else
      ok = f_cond(f_get(doc, k), c)
    end
    if not ok then return false end
  end
  return true
end
