"""The demo server's link: local on a laptop, /user/NAME/proxy/PORT/ on a hub (views/links.py).

The link through a real hub and a real browser is tested in tests/test_hub.py.
"""

from __future__ import annotations

import doctest

import pytest

from acceptlab.views import links
from acceptlab.views.links import demo_link

HUB = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/", "JUPYTERHUB_USER": "ada"}


def test_on_a_laptop_the_link_is_loopback():
    link = demo_link(41234, environ={})
    assert (link.url, link.where, link.note) == ("http://127.0.0.1:41234/", "local", "")


def test_a_wildcard_or_ipv6_host_is_reached_through_loopback():
    assert str(demo_link(80, "0.0.0.0", environ={})) == "http://127.0.0.1:80/"
    assert str(demo_link(80, "::1", environ={})) == "http://[::1]:80/"
    assert str(demo_link(80, "::", environ={})) == "http://[::1]:80/"


def test_on_a_hub_with_the_proxy_the_link_goes_through_the_user_s_server():
    link = demo_link(41234, environ=HUB, proxy=True)
    assert (link.url, link.where, link.note) == ("/user/ada/proxy/41234/", "hub", "")


def test_on_a_hub_that_knows_its_public_address_the_link_is_absolute():
    environ = {**HUB, "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/user/ada/"}
    assert str(demo_link(5, environ=environ, proxy=True)) == \
        "https://hub.example.org/user/ada/proxy/5/"
    environ["JUPYTERHUB_PUBLIC_URL"] = ""  # what the hub sets when it has no public_url
    assert str(demo_link(5, environ=environ, proxy=True)) == "/user/ada/proxy/5/"


def test_a_prefix_without_its_trailing_slash_still_makes_one_slash():
    environ = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada"}
    assert str(demo_link(7, environ=environ, proxy=True)) == "/user/ada/proxy/7/"


def test_on_a_hub_without_the_proxy_the_learner_is_told_what_is_missing():
    link = demo_link(41234, environ=HUB, proxy=False)
    assert link.where == "hub-unreachable" and link.url == "http://127.0.0.1:41234/"
    assert "jupyter-server-proxy" in link.note and "acceptlab[hub]" in link.note


def test_in_a_notebook_the_link_is_clickable_and_escaped():
    shown = demo_link(9, environ={"JUPYTERHUB_SERVICE_PREFIX": "/user/a&b/"}, proxy=True)
    assert shown._repr_html_() == ('<a href="/user/a&amp;b/proxy/9/" target="_blank">'
                                   '/user/a&amp;b/proxy/9/</a>')
    assert "<b>Note:</b>" in demo_link(9, environ=HUB, proxy=False)._repr_html_()


def test_without_the_proxy_argument_it_looks_for_the_package(monkeypatch):
    monkeypatch.setattr(links, "proxy_installed", lambda: True)
    assert demo_link(9, environ=HUB).where == "hub"
    monkeypatch.setattr(links, "proxy_installed", lambda: False)
    assert demo_link(9, environ=HUB).where == "hub-unreachable"


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_a_port_out_of_range_is_refused(port):
    with pytest.raises(ValueError, match="port must be"):
        demo_link(port, environ={})


def test_the_module_s_examples_hold():
    assert doctest.testmod(links).failed == 0
