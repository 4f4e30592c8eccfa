"""The dashboard as an outsider reaches it: the sign-in form (the one route anyone may send a
body to without a key: bounded before it is parsed, nothing in it a 500), and a loopback bind
reached through a reverse proxy on the same machine."""

import re
import socket
from pathlib import Path

import httpx

from tests.http.conftest import Served


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
