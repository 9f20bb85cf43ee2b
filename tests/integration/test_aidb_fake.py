"""The fake AIDB's own lifecycle: the kernel picks its port, and down/up keeps it."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from tests.aidb_fake import FakeAidb


def answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/skills", timeout=5).status == 200
    except urllib.error.URLError:
        return False


def test_the_port_is_bound_at_start_and_kept_across_down_and_up():
    fake = FakeAidb().start()
    try:
        port, url = fake.port, fake.url
        assert port and answers(url)
        fake.down()
        assert not answers(url)
        fake.up()
        assert fake.port == port and answers(url)
    finally:
        fake.close()


def test_up_says_so_when_the_port_was_taken_while_down():
    fake = FakeAidb().start()
    try:
        fake.down()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", fake.port))
            squatter.listen()
            with pytest.raises(AssertionError, match=f"port {fake.port} was taken while AIDB "
                                                     "was down"):
                fake.up()
    finally:
        fake.close()
