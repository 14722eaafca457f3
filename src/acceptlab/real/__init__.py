"""Real servers under the same lens: start gunicorn, uvicorn, nginx or Node on loopback
(servers), read any server's accept topology from /proc (topology), and attribute every
connection to the worker that accepted it (observe)."""
