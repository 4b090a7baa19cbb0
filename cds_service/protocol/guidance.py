"""GET /guidance and /guidance/{card id}: the full guidance behind each card,
as a printable, accessible HTML page with no patient data.

Rendered from the card template (cards/<id>.yaml): its `guidance:` Markdown,
or, while a card has none, its `detail` without the patient-specific parts
(the "Patient data used" list and paragraphs that are only a {{placeholder}}
are dropped, other placeholders shown as "[…]"). Each card links here with a CDS Hooks link of type `absolute`, built
from CDS_PUBLIC_BASE_URL (what a browser outside the proxy can reach) or,
without it, the request's own root URL. No JWT: the pages hold nothing about
a patient, and the clinician's browser, not the EHR, opens them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable

from flask import Blueprint, render_template, request

from cds_service import card_render
from cds_service.config import Settings
from cds_service.protocol.auth import request_audience
from cds_service.protocol.errors import ApiError
from cds_service.protocol.runtime import runtime
from cds_service.rules.base import resolve_cross_refs
from cds_service.rules.catalogue import VALUE_TIERS, value_rank

bp = Blueprint("guidance", __name__)

LINK_LABEL = "Full guidance (no patient data)"


@functools.lru_cache(maxsize=1)
def _markdown():
    """The page renderer, made on the first guidance page: hook calls never
    need markdown-it (about 2 MB a worker does not load until then). Raw
    HTML in the Markdown is escaped, never passed through."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


_PATIENT_DATA = re.compile(r"\*\*Patient data used:?\*\*:?\s*\{\{\s*facts\s*\}\}", re.I)
_PLACEHOLDER = re.compile(r"\{\{\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\}\}")
_PLACEHOLDER_LINE = re.compile(r"^[ \t]*\{\{\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\}\}[ \t]*$", re.M)


def page_path(card_id: str) -> str:
    return f"/guidance/{card_id}"


def guidance_links(settings: Settings | None = None) -> Callable[[str], dict[str, str]]:
    """card id -> the card's link to its page, for the cards of one request
    (call inside it): the base URL is read at the first card, not at each.
    `settings`: the app's, when the caller has them."""
    root: list[str] = []

    def link(card_id: str) -> dict[str, str]:
        if not root:  # request_audience(..., "/") is the base without its trailing /
            root.append(request_audience((settings or runtime().settings).public_base_url, request, "/"))
        return {"label": LINK_LABEL, "url": root[0] + page_path(card_id), "type": "absolute"}

    return link


def guidance_markdown(card: dict) -> str:
    # A card without a guidance text shows its detail: a cross-reference there takes its words
    # that stand alone (no other card is beside a guidance page).
    text = resolve_cross_refs(card.get("guidance") or card.get("detail") or "", ())
    text = _PATIENT_DATA.sub("", text)
    text = _PLACEHOLDER_LINE.sub("", text)  # a paragraph that is all patient-specific
    return _PLACEHOLDER.sub("[…]", text).strip()


def _title(card: dict) -> str:
    source = card.get("source") or {}
    return source.get("topic_display") or card["id"]


# The stylesheet is inline (one request per page) and allowed by its hash.
_STYLE = """
:root { color-scheme: light; --ink: #1b1b1b; --muted: #4a4a4a; --link: #0b4fa8; --rule: #c9c9c9; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 1.0625rem/1.6 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
header, main, footer { max-width: 44rem; margin: 0 auto; padding: 0 1rem; }
header { border-bottom: 1px solid var(--rule); padding-top: .75rem; padding-bottom: .75rem; }
header a { font-weight: 600; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: 1.25rem 0 .25rem; }
h2 { font-size: 1.2rem; margin: 1.75rem 0 .5rem; }
h3 { font-size: 1.05rem; }
p, li { overflow-wrap: anywhere; }
a { color: var(--link); }
a:focus-visible { outline: 3px solid #f2a900; outline-offset: 2px; }
.skip { position: absolute; left: -100vw; }
.skip:focus { left: 1rem; top: .5rem; background: #fff; padding: .25rem .5rem; }
.meta { color: var(--muted); margin-top: 0; }
table { display: block; overflow-x: auto; border-collapse: collapse; }
th, td { border: 1px solid var(--rule); padding: .25rem .5rem; text-align: left; }
ul.cards { padding-left: 1.25rem; }
footer { border-top: 1px solid var(--rule); margin-top: 2rem; padding-top: .75rem; padding-bottom: 2rem;
         color: var(--muted); font-size: .9rem; }
@media print {
  body { font-size: 11pt; }
  header nav, .skip { display: none; }
  header, main, footer { max-width: none; padding: 0; }
  a { color: inherit; }
  main a[href^="http"]::after { content: " (" attr(href) ")"; font-size: .85em; }
  h1, h2, h3 { break-after: avoid; }
}
"""
_STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src '{_STYLE_HASH}'; img-src data:; "
                               "base-uri 'none'; form-action 'none'",
    "Cache-Control": "public, max-age=3600",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@functools.lru_cache(maxsize=None)
def _page(card_id: str) -> str:
    card = card_render.load_card(card_id)
    source = card.get("source") or {}
    return render_template(
        "guidance.html", style=_STYLE, title=_title(card), card_id=card_id, indicator=card["indicator"],
        body=_markdown().render(guidance_markdown(card)), source_label=source.get("label", ""),
        source_url=source.get("url", ""))


@functools.lru_cache(maxsize=1)
def _index() -> str:
    tiers = {name: [] for name, _ in VALUE_TIERS}
    other = []
    for card_id in card_render.card_ids():
        card = card_render.load_card(card_id)
        entry = (card_id, _title(card), card["indicator"])
        if card["indicator"] == "info":
            tiers[VALUE_TIERS[value_rank(card_id)[0]][0]].append(entry)
        else:
            other.append(entry)
    groups = [(f"Information cards: {name}", sorted(entries, key=lambda e: value_rank(e[0])))
              for name, entries in tiers.items() if entries]
    groups.append(("Warning and critical cards", other))
    return render_template("guidance_index.html", style=_STYLE, groups=groups)


@bp.get("/guidance")
@bp.get("/guidance/")
def index():
    return _index(), 200, {"Content-Type": "text/html; charset=utf-8", **_HEADERS}


@bp.get("/guidance/<card_id>")
def page(card_id: str):
    if card_id not in card_render.card_ids():
        raise ApiError(404, f"no card with id {card_id!r}; GET /guidance lists them", code="unknown_card")
    return _page(card_id), 200, {"Content-Type": "text/html; charset=utf-8", **_HEADERS}
