"""`mnist serve`: a local teaching page where a user draws a digit and watches their own
trained network answer.

`registry.py` knows which runs may be opened (by name only) and loads each model once;
`app.py` is the Starlette application (the page and its JSON endpoints); `server.py` binds
the socket and runs uvicorn; `static/` holds the page itself (plain HTML, CSS and
JavaScript, served by the tool: no CDN, no build step). Starlette and uvicorn come with the
`serve` extra and are imported only by this package.
"""
