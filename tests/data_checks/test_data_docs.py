import re
from pathlib import Path

import pytest

from data_checks.data_docs import CDN_COPIES, VENDOR_DIR, make_site_offline
from tests.fixtures.data_docs import build_docs

# What a page or stylesheet fetches when opened: scripts, stylesheets, images and CSS url()s (links a reader may
# follow, such as GX's documentation, load nothing).
LOADS = re.compile(r'(?:<script[^>]*\ssrc|<link[^>]*\shref|<img[^>]*\ssrc)="([^"#]+)"|url\(([^)#]+)\)')


def loads_of(site: Path) -> dict[str, list[str]]:
    """Every address each page and stylesheet under `site` loads, by file."""
    loads = {}
    for path in sorted([*site.rglob("*.html"), *site.rglob("*.css")]):
        found = LOADS.findall(path.read_text(encoding="utf-8", errors="replace"))
        addresses = [(a or b).strip("'\"") for a, b in found]
        loads[str(path.relative_to(site))] = [a for a in addresses if not a.startswith("data:")]
    return loads


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return build_docs(tmp_path_factory.mktemp("gx"))


def test_every_cdn_address_has_its_vendored_copy():
    assert all((VENDOR_DIR / copy).is_file() for copy in CDN_COPIES.values())
    assert len(set(CDN_COPIES.values())) == 15


def test_a_built_site_loads_nothing_from_the_network(site):
    remote = {page: [a for a in found if "://" in a] for page, found in loads_of(site).items()}
    assert {page: found for page, found in remote.items() if found} == {}
    # The pages are GX's own: an index, the suite's page and one validation result.
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html"))
    assert pages[:2] == ["expectations/canonical_rows.html", "index.html"]
    assert len(pages) == 3 and pages[2].startswith("validations/canonical_rows/__none__/")


def test_every_local_asset_a_page_loads_exists(site):
    missing = []
    for page, found in loads_of(site).items():
        for address in found:
            target = (site / page).parent / address.split("?")[0]
            # Left out on purpose: GX's favicon link on a validation page climbs one directory too few (a GX
            # template bug; browsers skip a missing favicon silently), and Font Awesome's .ttf fallbacks, listed
            # after the .woff2 every browser that runs these pages loads (SOURCES.md).
            if not target.is_file() and not address.endswith(("favicon.ico", ".ttf")):
                missing.append(f"{page}: {address}")
    assert missing == []
    index_loads = loads_of(site)["index.html"]
    assert "static/vendor/jquery-3.7.1/jquery.min.js" in index_loads
    assert "static/images/logo-long.png" in index_loads


def test_making_a_site_offline_twice_changes_nothing_the_second_time(site):
    assert make_site_offline(site) == []
