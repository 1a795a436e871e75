-- POSTs a client-credentials token request with form credentials.
-- Arguments (after "--"): client_id client_secret.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function init(args)
	wrk.body = "grant_type=client_credentials&client_id=" .. args[1] .. "&client_secret=" .. args[2]
end
