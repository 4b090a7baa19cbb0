"""Guidance pages: one per card id and an index, rendered from the card
templates with no patient data; checked over HTTP and in a real headless
browser (Debian's chromium, driven by Playwright) on a loopback server:
no console errors, no horizontal scroll at phone width, print styles,
accessible structure and contrast. Screenshots go to test-output/guidance/
(CDS_TEST_OUTPUT_DIR overrides the folder)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from flask import request
from werkzeug.serving import make_server

from cds_service.card_render import card_ids, load_card
from cds_service.protocol.auth import request_audience
from cds_service.protocol.guidance import LINK_LABEL, guidance_links, guidance_markdown, page_path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = Path(os.environ.get("CDS_TEST_OUTPUT_DIR") or ROOT / "test-output") / "guidance"
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}


def test_index_links_every_card(client):
    resp = client.get("/guidance")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    for card_id in card_ids():
        assert f'href="/guidance/{card_id}"' in page


@pytest.mark.parametrize("card_id", card_ids())
def test_each_page_is_the_card_guidance_without_patient_data(client, card_id):
    resp = client.get(f"/guidance/{card_id}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert '<html lang="en">' in page and page.count("<h1>") == 1
    assert "{{" not in page and "Patient data used" not in page
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    card = load_card(card_id)
    assert card["source"]["topic_display"] in page


@pytest.mark.parametrize("card_id", card_ids())
def test_every_card_has_its_own_cited_guidance_page(card_id):
    """Issue 12: the full guidance of every card id is written out (not the short card's
    detail shown again), and names its sources."""
    card = load_card(card_id)
    assert len(card.get("guidance", "").split()) >= 100, f"{card_id}: no guidance section of its own"
    assert "## Source" in card["guidance"] and card["source"]["url"].startswith("https://")


def test_guidance_section_wins_over_the_detail():
    card = {"id": "C-X", "detail": "Short. **Patient data used:**\n{{facts}}",
            "guidance": "## Full text\n\nAll of it."}
    assert guidance_markdown(card) == "## Full text\n\nAll of it."
    # No guidance yet: the detail, without the patient's data and with its placeholders blanked.
    detail = "Dose {{drug}}.\n\n{{precautions}}\n\nMore.\n\n**Patient data used:**\n{{facts}}"
    assert guidance_markdown({"id": "C-X", "detail": detail}) == "Dose […].\n\n\n\nMore."


def test_unknown_card_is_a_json_404(client):
    for path in ("/guidance/C-NOPE", "/guidance/..%2Fpyproject"):
        resp = client.get(path)
        assert resp.status_code == 404
        assert resp.get_json()["error"] in ("unknown_card", "not_found")


def _chromium() -> str:
    found = os.environ.get("CDS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        # The README's test command must run on a machine with only Python; CI
        # (.ci/run installs chromium and sets CDS_REQUIRE_BROWSER) never skips this.
        message = "no chromium: `apt-get install -y chromium` (.ci/run does it) or set CDS_CHROMIUM"
        if os.environ.get("CDS_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def live_server(make_app):
    """The real app on a loopback port, served by werkzeug in a thread."""
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


# Contrast of every text element against the page's white background (WCAG AA: 4.5).
_LOWEST_CONTRAST = """() => {
  const lum = (rgb) => {
    const [r, g, b] = rgb.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  let lowest = 21;
  for (const el of document.querySelectorAll('p, li, a, h1, h2, h3, code, strong, td, th')) {
    if (!el.offsetParent) continue;
    const ratio = (1.05) / (lum(getComputedStyle(el).color) + 0.05);
    lowest = Math.min(lowest, ratio);
  }
  return lowest;
}"""
_HEADING_LEVELS = "() => [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => Number(h.tagName[1]))"


def test_pages_in_a_real_browser(live_server, tmp_path):
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=_chromium(), headless=True, viewport=PHONE,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        try:
            page = context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            for path in ["/guidance", *(f"/guidance/{c}" for c in card_ids())]:
                resp = page.goto(live_server + path)
                assert resp is not None and resp.status == 200, path
                assert page.evaluate("document.documentElement.lang") == "en"
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{path}: {overflow}px of horizontal scroll at 375 px"
                levels = page.evaluate(_HEADING_LEVELS)
                assert levels[0] == 1 and levels.count(1) == 1, f"{path}: one h1 first ({levels})"
                assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False)), f"{path}: {levels}"
                assert page.evaluate(_LOWEST_CONTRAST) >= 4.5, path
            page.goto(f"{live_server}/guidance/C-EXERCISE")
            page.screenshot(path=str(OUTPUT / "C-EXERCISE-375px.png"), full_page=True)
            page.set_viewport_size(DESKTOP)
            page.screenshot(path=str(OUTPUT / "C-EXERCISE-1280px.png"), full_page=True)
            page.goto(f"{live_server}/guidance")
            page.screenshot(path=str(OUTPUT / "index-1280px.png"), full_page=True)
            # Print: the navigation goes, external links show their address.
            page.goto(f"{live_server}/guidance/C-EXERCISE")
            page.emulate_media(media="print")
            assert page.evaluate("getComputedStyle(document.querySelector('header nav')).display") == "none"
            page.pdf(path=str(OUTPUT / "C-EXERCISE-print.pdf"))
        finally:
            context.close()
    assert problems == []
    assert (OUTPUT / "C-EXERCISE-375px.png").stat().st_size > 1000


@pytest.mark.parametrize("public_base_url", ["", "https://cds.example.org/base/"])
@pytest.mark.parametrize("root", ["/", "/prefix/"])
def test_guidance_links_of_a_request_are_each_cards_own_audience_url(make_app, public_base_url, root):
    """guidance_links reads the base once per request: each link is still what
    request_audience gives for the card's own page."""
    app = make_app(CDS_PUBLIC_BASE_URL=public_base_url) if public_base_url else make_app()
    with app.test_request_context("/cds-services/osteoporosis-patient-view", method="POST",
                                  base_url=f"http://ehr.example.org:8080{root}"):
        link = guidance_links()
        for card_id in card_ids()[:5]:
            expected = request_audience(public_base_url, request, page_path(card_id))
            assert link(card_id) == {"label": LINK_LABEL, "url": expected, "type": "absolute"}
