"""The API docs pages work with no network: every asset they load is served by the app."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.e2e

BASE = "http://testserver"


class _Assets(HTMLParser):
    """Collects every URL a page loads: scripts, stylesheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            value = found.get(name)
            if value and tag in ("script", "link", "img"):
                self.urls.append(value)


def _assets(page: str) -> list[str]:
    parser = _Assets()
    parser.feed(page)
    return parser.urls


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_only_same_origin_assets(client: TestClient, path: str) -> None:
    """/docs (Swagger UI) and /redoc name no CDN or other host: each script, stylesheet and
    icon is a URL of the app itself, and each answers 200 with content."""
    page = client.get(path)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    urls = _assets(page.text)
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts, f"{path} loads no script: {urls}"
    for url in urls:
        absolute = urljoin(BASE + path, url)
        assert urlsplit(absolute).netloc == urlsplit(BASE).netloc, f"{path} loads {url}"
        asset = client.get(absolute)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert "cdn" not in page.text.lower()
    assert "fonts.googleapis" not in page.text


def test_docs_page_points_at_the_openapi_document(client: TestClient) -> None:
    """The Swagger UI page loads the app's own /openapi.json, which answers 200."""
    page = client.get("/docs").text
    assert "/openapi.json" in page
    assert client.get("/openapi.json").status_code == 200
