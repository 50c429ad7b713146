"""GX Data Docs that open offline: the pages' CDN scripts, styles and fonts served from the site itself.

Great Expectations 1.x writes pages that load jQuery, Bootstrap, bootstrap-table, Vega and Font Awesome from
five CDNs and its logo from S3 (with the data context id in the query string). Opened where those hosts are
unreachable, every page logs `$ is not defined` and draws no table. After each docs build the vendored copies
(`data_docs_vendor/`, see its SOURCES.md) go to `static/vendor/` and every page points at them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

VENDOR_DIR = Path(__file__).parent / "data_docs_vendor"

# Every CDN address in GX's page templates (render/view/templates/*.j2) → our copy under static/vendor/.
CDN_COPIES: dict[str, str] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js-1.12.9/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.js"
    ),
    # GX asks for the filter-control extension's styles from 1.19.0 (minified on the index, plain on pages): 1.19.1's
    # minified stylesheet has the same two rules.
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table-1.19.1/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker-1.9.0/bootstrap-datepicker.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker-1.9.0/bootstrap-datepicker.min.css"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "bootstrap-dark-1.1.0/bootstrap-prefers-dark.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free-6.6.0/css/all.min.css"
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/vega-embed.min.js",
}
# GX's logos on S3 (the navbar's carries `?d=<time>&dataContextId=<id>`): the site ships logo-long.png itself.
S3_IMAGE = re.compile(
    r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/[\w.-]+\.png(\?[^\"')\s]*)?"
)
# Subresource integrity needs a CORS fetch, which a file:// page cannot make: the copies load without it.
INTEGRITY = re.compile(r'\s+integrity="[^"]*"\s+crossorigin="anonymous"')


def make_site_offline(site: Path) -> list[Path]:
    """Copy the vendored assets into `site`/static/vendor and point every page and stylesheet at them.

    Idempotent (a rewritten page has nothing left to replace); returns the files it changed.
    """
    copy_missing(VENDOR_DIR, site / "static" / "vendor")
    changed = []
    for path in sorted([*site.rglob("*.html"), *(site / "static" / "styles").glob("*.css")]):
        text = path.read_text(encoding="utf-8")
        offline = offline_text(text, site_root=Path(os.path.relpath(site, path.parent)))
        if offline != text:
            path.write_text(offline, encoding="utf-8")
            changed.append(path)
    return changed


def offline_text(text: str, site_root: Path) -> str:
    """`text` with every CDN address replaced by its copy, relative to the page (`site_root` = the way up)."""
    for address, copy in CDN_COPIES.items():
        text = text.replace(f'"{address}"', f'"{(site_root / "static" / "vendor" / copy).as_posix()}"')
    text = S3_IMAGE.sub((site_root / "static" / "images" / "logo-long.png").as_posix(), text)
    return INTEGRITY.sub("", text)


def copy_missing(source: Path, target: Path) -> None:
    """Copy each file of `source` whose copy under `target` is missing or of another size: a site's later builds
    copy nothing (the 2.7 MB went again on every validation before)."""
    for path in source.rglob("*"):
        copy = target / path.relative_to(source)
        if path.is_file() and not (copy.is_file() and copy.stat().st_size == path.stat().st_size):
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
