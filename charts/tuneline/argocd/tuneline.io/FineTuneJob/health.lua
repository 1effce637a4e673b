-- Argo CD health check for tuneline.io/FineTuneJob (Lua 5.1, Argo CD's sandbox: no os/io).
-- Queued (waiting in Kueue) and suspended jobs are Suspended, a failed job is Degraded, a job
-- that finished is Healthy, anything on its way (pending, training, evaluating, exporting) is
-- Progressing. A spec change the operator has not seen yet is Progressing too.
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

local function describe(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the tuneline operator to pick up the job"
  return hs
end

local failed = condition(status, "Failed")
if status.phase == "Failed" or (failed ~= nil and failed.status == "True") then
  hs.status = "Degraded"
  local reason = status.reason
  if reason == nil and failed ~= nil then
    reason = failed.reason
  end
  local message = describe(status, (failed ~= nil and failed.message) or "the job failed")
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

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  local version = status.artifacts ~= nil and status.artifacts.modelVersion or nil
  if version ~= nil then
    hs.message = describe(status, "Succeeded: model version " .. version)
  else
    hs.message = describe(status, "Succeeded")
  end
  return hs
end

if status.phase == "Queued" then
  hs.status = "Suspended"
  local queue = obj.spec ~= nil and obj.spec.queueName or nil
  if queue ~= nil then
    hs.message = describe(status, "Queued in " .. queue .. ", waiting for admission")
  else
    hs.message = describe(status, "Queued, waiting for admission")
  end
  return hs
end

if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(status, "Suspended (spec.suspend is true)")
  return hs
end

hs.status = "Progressing"
local message = status.phase
if status.progress ~= nil and status.progress.percent ~= nil then
  message = message .. " (" .. status.progress.percent .. "%)"
end
hs.message = message
return hs
