"""The dashboard in a real headless browser (Debian's chromium), and its sign-in."""

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import httpx
from PIL import Image

from okr_ledger.http.keys import Scope
from tests.http.conftest import Served
from tests.http.support import cli, running

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed (.ci/run installs Debian's chromium)"
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    done = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class _Text(HTMLParser):
    """The text a person reads: no tags, scripts or styles, white space collapsed."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._hidden += tag in ("script", "style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style", "title")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)

    def text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.parts)).strip()


def visible_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    return parser.text()


def test_the_org_page_shows_the_tree_progress_warnings_and_a_chart(
    served: Served, tmp_path: Path
) -> None:
    page = f"{served.server.base}/orgs/northwind"
    dom = chromium(tmp_path, "--dump-dom", page).stdout
    text = visible_text(dom)
    for title in (
        "Customers love working with us",  # objectives, and the key results under them
        "Answer every customer fast",
        "Raise NPS from 31 to 45",
        "Cut first response time to 2h",
    ):
        assert title in text
    assert text.index("Customers love working with us") < text.index("Answer every customer fast")
    assert re.search(r"Raise NPS from 31 to 45 nps \d{1,3}% \d+ / 45 points", text), text[:3000]
    assert "on track" in text
    assert "conf 0.80" in text
    assert "Alignment warnings" in text
    assert "objective 'office-move': no path to an active theme (orphan)" in text
    assert "Stale key results" in text
    assert re.search(r'class="fill (on_track|at_risk|off_track)" style="width: \d', dom)

    shot = tmp_path / "org.png"  # the screenshot a person would see
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1400", page)
    with Image.open(shot) as image:
        assert image.size == (1280, 1400)
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20)
        assert colours is not None
        assert len(colours) > 50  # text, bars in status colours: not a blank page
        rgb = [(n, colour) for n, colour in colours if isinstance(colour, tuple)]
        greens = sum(n for n, (r, g, b, *_) in rgb if g > 100 and r < 60 and b < 90)
        assert greens > 500  # the on-track bars and labels

    kr_dom = chromium(tmp_path, "--dump-dom", f"{page}/key-results/onboarding-days").stdout
    kr_text = visible_text(kr_dom)
    assert "Onboarding takes 5 days" in kr_text
    assert "Audit trail" in kr_text
    assert "KeyResultDefined" in kr_text
    assert "CheckInCorrected" in kr_text
    assert re.search(r'<polyline class="value" points="[\d., ]+"', kr_dom)
    assert re.search(r'<polyline class="target" points="[\d., ]+"', kr_dom)
    assert kr_dom.count('<circle class="value"') >= 3

    earlier = chromium(tmp_path, "--dump-dom", f"{page}?as_of=2000-01-01").stdout
    assert "No objectives." in visible_text(earlier)
    missing = httpx.get(f"{page}/key-results/no-such-kr", timeout=30)
    assert missing.status_code == 404
    assert "unknown key result 'no-such-kr'" in visible_text(missing.text)


def test_off_loopback_the_pages_need_a_read_key_kept_in_a_secure_cookie(
    served: Served, tmp_path: Path
) -> None:
    reader = served.key(orgs=("northwind",), scopes=(Scope.READ,), source=None)
    with (
        running(served.env, tmp_path / "public.log", host="0.0.0.0") as server,
        httpx.Client(base_url=server.base, timeout=30) as browser,
    ):
        if True:
            assert browser.get("/orgs/northwind").status_code == 303
            assert browser.get("/orgs/northwind").headers["location"] == "/signin"
            form = browser.get("/signin")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert token is not None
            csrf_cookie = form.headers["set-cookie"]
            assert "HttpOnly" in csrf_cookie
            assert "Secure" in csrf_cookie
            assert "SameSite=strict" in csrf_cookie
            jar = {"Cookie": f"okr_csrf={token[1]}"}
            wrong = browser.post("/signin", data={"key": reader, "csrf": "forged"}, headers=jar)
            assert wrong.status_code == 403
            cross_site = browser.post(
                "/signin",
                data={"key": reader, "csrf": token[1]},
                headers={**jar, "Sec-Fetch-Site": "cross-site"},
            )
            assert cross_site.status_code == 403
            writer = browser.post(
                "/signin", data={"key": served.writer, "csrf": token[1]}, headers=jar
            )
            assert writer.status_code == 401
            assert "not a valid read key" in writer.text
            signed = browser.post("/signin", data={"key": reader, "csrf": token[1]}, headers=jar)
            assert signed.status_code == 303
            session = signed.headers["set-cookie"]
            assert session.startswith(f"okr_key={reader};")
            for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
                assert attribute in session
            page = browser.get("/orgs/northwind", headers={"Cookie": f"okr_key={reader}"})
            assert page.status_code == 200
            assert "Raise NPS from 31 to 45" in page.text
            assert "Sign out" in page.text
            other_org = browser.get("/orgs/globex", headers={"Cookie": f"okr_key={reader}"})
            assert other_org.status_code == 403
            done = cli(served.env, "keys", "revoke", reader.split("_")[1])
            assert done.returncode == 0, done.stderr
            revoked = browser.get("/orgs/northwind", headers={"Cookie": f"okr_key={reader}"})
            assert revoked.status_code == 303
