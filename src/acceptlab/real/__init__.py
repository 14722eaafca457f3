"""Real servers under the same lens: start gunicorn, uvicorn, nginx or Node on loopback,
read any server's accept topology from /proc, and attribute every connection to its
worker.
"""
