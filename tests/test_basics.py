import socket

import pandas as pd

from acceptlab.basics import address_family, missing_as_na, show_address


def test_address_family_tells_ipv6_by_its_colons():
    assert address_family("::1") == socket.AF_INET6
    assert address_family("127.0.0.1") == socket.AF_INET
    assert address_family("localhost") == socket.AF_INET


def test_show_address_brackets_ipv6_only():
    assert show_address("::1", 42233) == "[::1]:42233"
    assert show_address("127.0.0.1", 1060) == "127.0.0.1:1060"


def test_missing_as_na_keeps_big_integers_exact():
    big = 2**62 + 1  # past float's 53-bit mantissa
    frame = missing_as_na(pd.DataFrame({"t": [big, -1]}), ["t"])
    assert str(frame.t.dtype) == "Int64"
    assert frame.t[0] == big and frame.t.isna()[1]
