-- Classifies every answer. Keys of `counts`:
--   "<status>"        a 2xx whose body is an envelope with code 0
--   "<status>:body"   a 2xx with any other body
--   "<status>:23090"  an error that is a JSON envelope with code 23090 and data null
--   "<status>:<code>" an error that is a JSON envelope with another code
--   "<status>:other"  an error that is not an envelope (malformed for outergate)
counts = {}

function response(status, headers, body)
	local key
	if status >= 200 and status < 300 then
		if body:find('"code":0', 1, true) then
			key = tostring(status)
		else
			key = status .. ":body"
		end
	else
		local ct = headers["Content-Type"] or headers["content-type"] or ""
		local code = body:match('^{"meta":{"message":"[^"]*","code":(%d+)},"data":null}$')
		if ct:find("application/json", 1, true) and code then
			key = status .. ":" .. code
		else
			key = status .. ":other"
		end
	end
	counts[key] = (counts[key] or 0) + 1
end
