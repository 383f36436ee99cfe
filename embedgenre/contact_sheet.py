"""Contact sheets: a retrieval result as one self-contained HTML page (``similar --html``).

The query sits on top, the results below in a grid, each with its poster, title, genres and
score. Posters are embedded as small JPEG data URIs, so the page needs nothing beside it. Indexed
movies are shown by the thumbnails stored in the index at index time, never by reading the poster
paths its item table names (an index from someone else could name any image of this machine);
only a query poster the user gave on the command line is read from disk.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import asdict
from pathlib import Path

from embedgenre.errors import EmbedgenreError, OutputPathError
from embedgenre.images import load_image
from embedgenre.retrieval import RetrievalResult
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

THUMB_HEIGHT = 240  # px; posters are about 2:3, so thumbnails are about 160 x 240

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:20px;margin:0 0 4px}.meta{color:#555;font-size:13px;margin:2px 0}
.query{display:flex;gap:16px;align-items:flex-start;padding:12px;background:#fff;
border:1px solid #ddd;border-radius:8px;margin-bottom:20px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px;font-size:13px}
.card img,.query img{display:block;height:240px;max-width:100%;object-fit:contain;
background:#eee;margin:0 auto 6px}
.title{font-weight:600}.score{font-variant-numeric:tabular-nums;color:#06c}
.genres{color:#666}.broken{outline:3px solid #c00}
"""

# Marks every image once the page has loaded: data-loaded="1" when it decoded, "0" (and a red
# outline) when it did not, so a broken thumbnail is visible to a person and to a test.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    var good = imgs[i].complete && imgs[i].naturalWidth > 0;
    imgs[i].setAttribute('data-loaded', good ? '1' : '0');
    if (good) { ok++; } else { imgs[i].classList.add('broken'); }
  }
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
});
"""


def thumbnail_data_uri(path: str | Path | None, height: int = THUMB_HEIGHT) -> str | None:
    """A poster downscaled to ``height`` px as a ``data:image/jpeg;base64,...`` URI (None if unreadable)."""
    if not path:
        return None
    try:
        img = load_image(path)
    except EmbedgenreError as e:
        logger.warning("no thumbnail for %s: %s", path, e)
        return None
    if img.height > height:
        img = img.resize((max(1, round(img.width * height / img.height)), height))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str | None, alt: str) -> str:
    if uri is None:
        return '<div class="meta">(no poster)</div>'
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _stored(result: RetrievalResult, item_id: str | None) -> str | None:
    """The data URI of the thumbnail the index stores for ``item_id`` (None: none stored)."""
    data = result.thumbnails.get(item_id) if item_id else None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii") if data else None


def _label(d: dict) -> str:
    title = d.get("title") or d.get("id")
    return f"{title} ({d['year']})" if d.get("year") else str(title)


def render_html(result: RetrievalResult) -> str:
    """A self-contained HTML page: the query on top, then a grid of results.

    Thumbnails are embedded as base64 JPEG data URIs (downscaled to ``THUMB_HEIGHT`` px, ~10 KB
    each), so the page can be moved, mailed or opened anywhere without the catalog beside it.
    """
    q = result.query
    e = html.escape
    if q["kind"] == "text":
        head = f"<div><h1>“{e(q['text'])}”</h1></div>"
    else:
        shown = q if q["kind"] == "item" else q.get("matched", {"poster": q["path"]})
        title = _label(shown) if shown.get("id") else Path(q["path"]).name
        # an indexed movie shows its stored thumbnail; a poster file the user gave, that file
        uri = _stored(result, shown.get("id")) or (
            thumbnail_data_uri(q["path"]) if q["kind"] == "poster" else None
        )
        head = (
            _img(uri, title)
            + f"<div><h1>{e(title)}</h1>"
            + (
                f'<p class="meta">{e(", ".join(shown["genres"]))}</p>'
                if shown.get("genres")
                else ""
            )
            + (f'<p class="meta">{e(q["path"])}</p>' if q["kind"] == "poster" else "")
            + "</div>"
        )
    enc = ", ".join(f"{m}: {name}" for m, name in result.encoders.items())
    lines = [f"by {result.by} ({enc})", result.scoring, *result.notes]
    meta = "".join(f'<p class="meta">{e(line)}</p>' for line in lines)
    cards = []
    for n in result.neighbours:
        dup = f'<div class="meta">also: {e(", ".join(n.duplicates))}</div>' if n.duplicates else ""
        cards.append(
            f'<div class="card">{_img(_stored(result, n.id), _label(asdict(n)))}'
            f'<div class="title">{n.rank}. {e(_label(asdict(n)))}</div>'
            f'<div class="genres">{e(", ".join(n.genres))}</div>'
            f'<div class="score">score {n.score:.3f}</div>'
            f'<div class="meta">{e(n.id)}</div>{dup}</div>'
        )
    title = "Similar to " + (q.get("text") or q.get("title") or q.get("id") or Path(q["path"]).name)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>"
        f'<body><div class="query">{head}<div>{meta}</div></div>'
        f'<div class="grid">{"".join(cards)}</div></body></html>\n'
    )


def write_html(result: RetrievalResult, path: str | Path) -> Path:
    """Write :func:`render_html` to ``path`` (parent directories created); returns the path."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise OutputPathError(
            f"{path} is a directory;", "give a file name such as similar.html.", param="html"
        )
    atomic.write_text(path, render_html(result))
    return path


def render_audit_html(result, index) -> str:
    """An audit (:class:`embedgenre.audit.AuditResult`) as one self-contained HTML page: per
    movie its stored thumbnail, labels, the genres that look wrong (struck through) or missing,
    and the neighbours that side with them."""
    e = html.escape

    def thumb(item_id: str, height: int = THUMB_HEIGHT) -> str:
        data = index.thumbnail(item_id)
        uri = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii") if data else None
        return _img(uri, item_id).replace("<img ", f'<img style="height:{height}px" ', 1)

    h = result.head
    lines = [
        f"{result.n_flagged} of {result.n_items} labelled movies flagged; judged by {h['spec']}"
        + (f" (head {h['name']})" if h.get("name") else ""),
        *result.notes,
    ]
    meta = "".join(f'<p class="meta">{e(line)}</p>' for line in lines)
    cards = []
    for f in result.findings:
        wrong = [i for i in f.issues if i.kind == "wrong"]
        missing = [i for i in f.issues if i.kind == "missing"]
        issues = "".join(
            f'<div class="{i.kind}">{"looks wrong" if i.kind == "wrong" else "looks missing"}: '
            f"{e(i.genre)} (score {i.score:.2f}, typical {i.threshold:.2f}"
            f"{f', {i.neighbours} neighbours agree' if f.neighbours or i.neighbours else ''})"
            "</div>"
            for i in wrong + missing
        )
        nbs = "".join(
            f'<span class="nb" title="{e(", ".join(n["genres"]))}">{thumb(n["id"], 90)}'
            f"{e(_label(n))}</span>"
            for n in f.neighbours[:6]
        )
        cards.append(
            f'<div class="card finding" data-id="{e(f.id)}">{thumb(f.id)}'
            f'<div class="title">{f.rank}. {e(_label(vars(f)))}</div>'
            f'<div class="genres">labelled: {e(", ".join(f.labelled))}</div>'
            f'<div class="genres">predicted: {e(", ".join(f.predicted) or "none")}</div>'
            f'<div class="score">label quality {f.quality:.2f}</div>{issues}'
            + (f'<div class="meta">neighbours that agree:</div><div>{nbs}</div>' if nbs else "")
            + f'<div class="meta">{e(f.id)}</div></div>'
        )
    css = _CSS + ".wrong{color:#b00}.missing{color:#070}.nb{display:inline-block;width:70px;"
    css += "font-size:10px;margin:2px;vertical-align:top}.nb img{height:90px}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Label audit of {e(result.index)}</title><style>{css}</style>"
        f"<script>{_SCRIPT}</script></head>"
        f'<body><div class="query"><div><h1>Labels that look wrong or missing</h1>{meta}</div>'
        f'</div><div class="grid">{"".join(cards)}</div></body></html>\n'
    )


def write_audit_html(result, index, path: str | Path) -> Path:
    """Write :func:`render_audit_html` to ``path``; returns the path."""
    path = Path(path)
    atomic.write_text(path, render_audit_html(result, index))
    return path
