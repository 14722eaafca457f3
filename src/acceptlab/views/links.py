"""The link to a demo server that works where the kernel runs: on this laptop, or on a hub.

Lesson 08 and ``acceptlab serve --protocol http`` start a web server on the
machine that runs the Python code, listening on loopback.  Which address a
browser should open depends on where that machine is:

* **the learner's own computer** (``make lab``): the browser runs there too,
  so ``http://127.0.0.1:PORT/`` reaches the server;
* **a JupyterHub or Binder**: the kernel runs on a server far away, and
  ``127.0.0.1`` in the learner's browser is the learner's laptop.  The hub
  tells the kernel where its Jupyter server is published
  (``JUPYTERHUB_SERVICE_PREFIX``: ``/user/NAME/``), and ``jupyter-server-proxy``
  (``pip install 'acceptlab[hub]'``) forwards ``/user/NAME/proxy/PORT/`` to
  ``127.0.0.1:PORT`` on the server's side, behind the hub's login.  The link
  is then that path, made absolute when the hub knows its public address
  (``JUPYTERHUB_PUBLIC_URL``).

    >>> demo_link(8000, environ={})
    DemoLink(url='http://127.0.0.1:8000/', where='local', note='')
    >>> str(demo_link(8000, environ={"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/"}, proxy=True))
    '/user/ada/proxy/8000/'

In a notebook, ``display(demo_link(port))`` shows a link to click (its
``_repr_html_``); ``print`` shows the address.
"""

from __future__ import annotations

import html
import importlib.util
import ipaddress
import os
from dataclasses import dataclass
from typing import Mapping

from ..basics import show_address

__all__ = ["DemoLink", "demo_link", "proxy_installed"]

NO_PROXY_NOTE = ("this kernel runs on a JupyterHub, and 127.0.0.1 in your browser is your own "
                 "computer, not the hub: ask for jupyter-server-proxy on the hub "
                 "(pip install 'acceptlab[hub]') to open the server from your browser")


@dataclass(frozen=True)
class DemoLink:
    """Where a browser can reach the demo server.

    Args:
        url: the address to open (a path such as ``/user/ada/proxy/8000/`` on a
            hub whose public address the kernel does not know; a browser
            opens it relative to the notebook's page).
        where: ``'local'``, ``'hub'`` (through jupyter-server-proxy), or
            ``'hub-unreachable'`` (on a hub without the proxy: the url is the
            server's own address, which the learner's browser cannot reach).
        note: one sentence for the learner when something is missing, else ''.
    """

    url: str
    where: str
    note: str = ""

    def __str__(self) -> str:
        return self.url

    def _repr_html_(self) -> str:
        link = html.escape(self.url, quote=True)
        text = f'<a href="{link}" target="_blank">{html.escape(self.url)}</a>'
        return text + (f"<br><b>Note:</b> {html.escape(self.note)}" if self.note else "")


def proxy_installed() -> bool:
    """Is jupyter-server-proxy importable here (and so, on a hub, serving ``/proxy/PORT/``)?"""
    return importlib.util.find_spec("jupyter_server_proxy") is not None


def demo_link(port: int, host: str = "127.0.0.1", *, environ: Mapping[str, str] | None = None,
              proxy: bool | None = None) -> DemoLink:
    """The link to a web server listening on ``host:port`` of the machine this code runs on.

    Args:
        port: the server's port.
        host: the address it listens on; a wildcard (``0.0.0.0``, ``::``) is
            reached through loopback.
        environ: the environment to read (default ``os.environ``); a kernel
            started by a JupyterHub has ``JUPYTERHUB_SERVICE_PREFIX`` in it.
        proxy: is jupyter-server-proxy installed (default: look for it).
    """
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, not {port}")
    environ = os.environ if environ is None else environ
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "")
    local = f"http://{show_address(_reachable(host), port)}/"
    if not prefix:
        return DemoLink(local, "local")
    if not (proxy_installed() if proxy is None else proxy):
        return DemoLink(local, "hub-unreachable", NO_PROXY_NOTE)
    public = environ.get("JUPYTERHUB_PUBLIC_URL", "")  # the server's full public URL, if known
    base = public if public.startswith(("http://", "https://")) else prefix
    return DemoLink(f"{base.rstrip('/')}/proxy/{port}/", "hub")


def _reachable(host: str) -> str:
    """The address a browser on this machine uses: a wildcard listener is reached on loopback."""
    try:
        address = ipaddress.ip_address(host or "127.0.0.1")
    except ValueError:
        return host  # a name, such as localhost
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return host
