-- POST /todos with a small JSON body.
wrk.method = "POST"
wrk.body = '{"title":"benchmark todo"}'
wrk.headers["Content-Type"] = "application/json"
