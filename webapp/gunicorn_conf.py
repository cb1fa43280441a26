"""gunicorn settings shared by `make run`, the Dockerfile and compose: `gunicorn -c python:webapp.gunicorn_conf`.

gunicorn has no setting for its `Server:` header, which names it and its version to every client; the
response class reads the module constant below, so replacing it here (before workers fork) hides both.
"""

import gunicorn.http.wsgi

gunicorn.http.wsgi.SERVER = "Layercake"  # type: ignore[attr-defined]

timeout = 600
graceful_timeout = 10
threads = 4
