"""The files the kit's real servers run: a tiny app for gunicorn and uvicorn (:mod:`.pidapp`),
Node's cluster script (``cluster.js``) and nginx's configuration template (``nginx.conf.template``).
:mod:`acceptlab.real.servers` starts them."""
