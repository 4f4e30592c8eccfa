"""The dashboard as an outsider reaches it: the sign-in form (the one route anyone may send a
body to without a key: bounded before it is parsed, nothing in it a 500), a loopback bind
reached through a reverse proxy on the same machine, pages in another site's frame, and a
client that holds connections (a head sent too slowly, too many connections)."""

import re
import socket
import time
from pathlib import Path

import httpx

from tests.http.conftest import Served, serving_the_demo
from tests.sockets import readable


def _form(client: httpx.Client) -> tuple[str, dict[str, str]]:
    """A fresh form's CSRF token, and its cookie as a header (the cookie is ``Secure``: an
    HTTP client keeps it off plain HTTP)."""
    page = client.get("/signin")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200
    assert found is not None
    return found[1], {"Cookie": f"okr_csrf={found[1]}"}


def test_a_sign_in_body_over_its_bound_is_refused_before_it_is_parsed(served: Served) -> None:
    with httpx.Client(base_url=served.server.base, timeout=60) as client:
        csrf, jar = _form(client)
        # Fields of 2 MB (under Starlette's 1 MB a field, 1,000 fields: up to 1 GB held)
        padding = "&".join(f"pad{n}={'x' * 500_000}" for n in range(4))
        body = f"csrf={csrf}&key=okr_000000000000_{'a' * 43}&{padding}"
        answer = client.post(
            "/signin",
            content=body,
            headers={**jar, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 413, answer.text[:300]
        assert answer.json()["reason_code"] == "too_large"


def test_a_multipart_sign_in_is_refused_unread(served: Served, tmp_path: Path) -> None:
    """Starlette spools a multipart form's files to disk without a bound: never parsed."""
    with httpx.Client(base_url=served.server.base, timeout=60) as client:
        csrf, jar = _form(client)
        answer = client.post(
            "/signin",
            headers=jar,
            data={"csrf": csrf, "key": "k"},
            files={"f": ("f.bin", b"\0" * 100_000, "application/octet-stream")},
        )
        assert answer.status_code == 415, answer.text[:300]
        assert answer.json()["reason_code"] == "unsupported_media_type"


def test_a_sign_in_with_text_that_is_not_ascii_is_refused_not_a_500(served: Served) -> None:
    with httpx.Client(base_url=served.server.base, timeout=60) as client:
        _, jar = _form(client)
        for csrf in ("é", "\u2028", "x" * 1000):
            answer = client.post("/signin", data={"csrf": csrf, "key": "é"}, headers=jar)
            assert answer.status_code == 403, (csrf[:10], answer.status_code, answer.text[:300])
        csrf, jar = _form(client)
        answer = client.post("/signin", data={"csrf": csrf, "key": "kéy"}, headers=jar)
        assert answer.status_code == 401, answer.text[:300]
        assert "That is not a valid read key." in answer.text


def test_the_sign_in_form_still_signs_in(served: Served) -> None:
    with httpx.Client(base_url=served.server.base, timeout=60) as client:
        csrf, jar = _form(client)
        answer = client.post(
            "/signin", data={"csrf": csrf, "key": f"  {served.reader} "}, headers=jar
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"okr_key={served.reader};")
        for attribute in ("HttpOnly", "Secure", "SameSite=strict"):
            assert attribute in cookie


def test_a_request_a_proxy_forwarded_to_a_loopback_bind_needs_a_key(served: Served) -> None:
    """A reverse proxy on the server's machine (TLS in front of a loopback bind) connects from
    127.0.0.1, and nginx's default sends ``Host: 127.0.0.1:PORT``: what marks the request as
    another machine's is the forwarding header it adds."""
    base = served.server.base
    assert httpx.get(f"{base}/orgs/northwind", timeout=30).status_code == 200  # this machine
    for header in (
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9;proto=https"},
        {"X-Real-IP": "203.0.113.9"},
        {"X-Forwarded-Host": "okr.example.com"},
    ):
        for page in ("/", "/orgs/northwind", "/orgs/northwind/key-results/nps"):
            answer = httpx.get(f"{base}{page}", headers=header, timeout=30)
            assert answer.status_code == 303, (header, page, answer.status_code)
            assert answer.headers["location"] == "/signin"
        signed_in = httpx.get(
            f"{base}/orgs/northwind",
            headers={**header, "Cookie": f"okr_key={served.reader}"},
            timeout=30,
        )
        assert signed_in.status_code == 200, header
        assert "Raise NPS from 31 to 45" in signed_in.text


def test_a_request_head_over_64_kib_is_refused_before_it_is_held(served: Served) -> None:
    """uvicorn's httptools protocol held a header of any length (100 MB answered 200 on
    /healthz): past 64 KiB of request head the connection is answered 400 and closed."""
    host, port = served.server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        try:
            while sent < 8 << 20:
                connection.sendall(b"a" * (1 << 16))
                sent += 1 << 16
            connection.sendall(b"\r\n\r\n")
        except OSError:
            pass  # closed by the server: what it answered is read below
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert sent < 8 << 20  # the server closed the connection long before the head ended
    # a head just under the bound, and keep-alive requests after it, are still served
    with httpx.Client(base_url=served.server.base, timeout=30) as client:
        for _ in range(3):
            big = client.get("/healthz", headers={"X-Fits": "a" * 60_000})
            assert big.status_code == 200


def test_every_answer_forbids_framing_and_sniffing(served: Served) -> None:
    """Another site cannot put a page (the sign-in form, the as-of picker) in a frame to
    trick a click, and no answer's type is sniffed: pages, the sign-in form, an API error,
    the static files."""
    with httpx.Client(base_url=served.server.base, timeout=60) as client:
        answers = [
            client.get("/"),
            client.get("/signin"),
            client.get("/v1/orgs/northwind/progress"),
            client.get("/healthz"),
        ]
    assert [a.status_code for a in answers] == [200, 200, 401, 200]
    for answer in answers:
        assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_slow_head_and_too_many_connections_are_refused(tmp_path: Path) -> None:
    """A client sending a request's head a byte at a time (slowloris: each byte used to reset
    uvicorn's keep-alive timeout) is answered 408 and closed once its head took
    ``OKR_HTTP_HEAD_TIMEOUT_SECONDS``; connections beyond ``OKR_HTTP_MAX_CONNECTIONS`` are
    answered 503 at once, and served again once fewer are open."""
    env = {"OKR_HTTP_HEAD_TIMEOUT_SECONDS": "1", "OKR_HTTP_MAX_CONNECTIONS": "3"}
    with serving_the_demo(tmp_path, idle_s=10, extra_env=env) as served:
        host, port = served.server.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sent, deadline = 0, time.monotonic() + 20
            # a header line every 0.2 s until the server answers (not sending past its close,
            # which the server's kernel would answer with a reset that can drop the answer)
            while time.monotonic() < deadline and not readable(slow, 0.2):
                slow.sendall(b"X-Slow: a\r\n")
                sent += 1
            answer = slow.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert time.monotonic() < deadline  # closed long before the client gave up
        assert sent >= 3  # its head was still coming when it was closed

        idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(2)]
        try:
            with httpx.Client(base_url=served.server.base, timeout=30) as client:
                refused = client.get("/healthz")
        finally:
            for connection in idle:
                connection.close()
        assert refused.status_code == 503, refused.text
        with httpx.Client(base_url=served.server.base, timeout=30) as client:
            assert client.get("/healthz").status_code == 200
