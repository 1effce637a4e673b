-- Argo CD health check for tuneline.io/ModelDeployment (Lua 5.1, Argo CD's sandbox: no os/io).
-- Available is Healthy; a canary in progress, a rollout or scaling that has not finished, or a
-- spec change not yet observed is Progressing; Degraded / Failed (including an automatic
-- rollback) is Degraded. A deployment scaled to zero on purpose is Suspended.
local hs = {}

local function condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil or (status.phase == nil and status.conditions == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the tuneline operator to pick up the deployment"
  return hs
end

local degraded = condition(status, "Degraded")
local available = condition(status, "Available")
local progressing = condition(status, "Progressing")

if status.phase == "Failed" or status.phase == "Degraded" or (degraded ~= nil and degraded.status == "True") then
  hs.status = "Degraded"
  local c = degraded
  if c == nil or c.status ~= "True" then
    c = available
  end
  local reason = c ~= nil and c.reason or nil
  local message = message_of(c, "the deployment is " .. (status.phase or "Degraded"))
  if reason ~= nil and reason ~= "" then
    hs.message = reason .. ": " .. message
  else
    hs.message = message
  end
  return hs
end

if obj.metadata ~= nil and obj.metadata.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

if status.canary ~= nil and status.canary.revision ~= nil then
  hs.status = "Progressing"
  hs.message = "Canary revision " .. status.canary.revision .. " at " .. (status.canary.weight or 0) .. "% of traffic"
  return hs
end

if status.phase == "Progressing" or status.phase == "Pending" or (progressing ~= nil and progressing.status == "True") then
  hs.status = "Progressing"
  hs.message = message_of(progressing, status.phase or "Progressing")
  return hs
end

if status.phase == "Available" or (available ~= nil and available.status == "True") then
  local replicas = obj.spec ~= nil and obj.spec.replicas or nil
  if replicas == 0 then
    hs.status = "Suspended"
    hs.message = "Scaled to zero (spec.replicas is 0)"
    return hs
  end
  hs.status = "Healthy"
  local ready = status.readyReplicas or 0
  if status.revision ~= nil then
    hs.message = "Revision " .. status.revision .. " available, " .. ready .. " ready replicas"
  else
    hs.message = ready .. " ready replicas"
  end
  return hs
end

hs.status = "Progressing"
hs.message = message_of(available, "Waiting for the deployment to become available")
return hs
