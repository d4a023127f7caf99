"""HTML and text to browser pages: what is kept, dropped and rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.browser.extract import html_to_page, text_to_page
from tools.browser.fetch import decode
from tools.browser.page import wrap_lines

PAGES = Path(__file__).parent / "data" / "pages"
BENCH_PAGES = Path(__file__).parent.parent / "benchmarks" / "pages"
URL = "https://tidewater.example.com/guides/herons.html"


@pytest.fixture(scope="module")
def guide():
    return html_to_page((PAGES / "guide.html").read_text(encoding="utf-8"), URL)


def test_title_and_url_line(guide):
    assert guide.title == "Tidewater Field Guide: Herons"
    assert guide.lines[0] == ""
    assert guide.lines[1] == f"URL: {URL}"


def test_chrome_scripts_styles_forms_and_hidden_content_are_dropped(guide):
    for marker in (
        "SCRIPT-TEXT",
        "NAV-LINK",
        "HIDDEN-TEXT",
        "INPUT-VALUE",
        "BUTTON-MUST",
        "FOOTER-MUST",
        "font-family",
    ):
        assert marker not in guide.text
    assert "Subscribe to the newsletter" in guide.text  # text inside a form stays


def test_links_become_numbered_markers(guide):
    assert "【0†great blue heron】" in guide.text
    assert "【1†green heron†birds.example.org】" in guide.text
    assert guide.urls == {
        "0": "https://tidewater.example.com/birds/great-blue-heron.html",
        "1": "https://birds.example.org/green-heron",
    }
    # fragment, mailto and javascript links are plain text
    assert "the night herons found" in guide.text
    assert "the editors' desk or open the chat" in guide.text


def test_same_url_gets_one_id_and_base_href_is_honoured():
    html = (
        '<html><head><base href="https://other.example.net/docs/"></head><body>'
        '<a href="a.html">first</a> <a href="a.html#part">again</a> <a href="b.html">second</a>'
        "</body></html>"
    )
    page = html_to_page(html, "https://site.example.com/")
    assert page.urls == {
        "0": "https://other.example.net/docs/a.html",
        "1": "https://other.example.net/docs/b.html",
    }
    assert "【0†first†other.example.net】 【0†again†other.example.net】" in page.text


def test_images_tables_lists_code_and_scripts_are_readable(guide):
    assert "[Image 0: A great blue heron standing in reeds]" in guide.text
    assert "| Great blue heron | 97–137 | 167–201 |" in guide.lines
    assert "- Yellow-crowned night herons prefer crabs." in guide.lines
    assert "## Night herons" in guide.lines
    i = guide.lines.index("def log_sighting(species, count):")
    assert guide.lines[i - 1].startswith("```")
    assert guide.lines[i + 1] == '    return {"species": species, "count": count}'
    assert "n^{2}" in guide.text and "H_{2}O" in guide.text


def test_page_cannot_forge_link_markers(guide):
    assert "【9†fake link】" not in guide.text
    assert "〖9†fake link〗" in guide.text
    assert "9" not in guide.urls


def test_source_line_breaks_inside_paragraphs_are_joined():
    page = html_to_page("<p>one\n   two</p><pre>a\n  b</pre>", "https://x.example.com/")
    assert "one two" in page.lines
    assert "a" in page.lines and "  b" in page.lines


def test_empty_and_broken_documents():
    assert html_to_page("", "https://x.example.com/").lines == ["", "URL: https://x.example.com/", ""]
    page = html_to_page("<p>unclosed <b>tags <i>everywhere", "https://x.example.com/")
    assert "unclosed tags everywhere" in page.text
    assert html_to_page("<p>no title</p>", "https://x.example.com/a").title == "x.example.com"


def test_xml_declaration_and_emoji():
    page = html_to_page(
        '<?xml version="1.0" encoding="utf-8"?><html><body><p>hi 🐦 there</p></body></html>',
        "https://x.example.com/",
    )
    assert "hi 🐦 there" in page.text


def test_plain_text_keeps_lines():
    page = text_to_page("first\r\nsecond\n\n  indented", "https://x.example.com/notes.txt")
    assert page.lines == ["", "URL: https://x.example.com/notes.txt", "first", "second", "", "  indented"]
    assert page.title == "x.example.com"


def test_wrap_lines_at_80_columns_keeps_spaces_and_cuts_long_words():
    line = "word " * 30 + "x" * 170
    wrapped = wrap_lines(line)
    assert all(len(piece) <= 80 for piece in wrapped)
    assert "".join(wrapped) == line
    assert wrap_lines("a\n\nb") == ["a", "", "b"]


def test_decode_prefers_header_then_meta_then_utf8():
    body = '<meta charset="windows-1251"><p>Привет</p>'.encode("cp1251")
    assert "Привет" in decode(body, None, sniff_meta=True)
    assert decode("é".encode(), None, sniff_meta=False) == "é"
    assert decode("é".encode("latin-1"), "iso-8859-1", sniff_meta=False) == "é"
    assert decode(b"caf\xe9", None, sniff_meta=False) == "café"  # not UTF-8: cp1252


@pytest.mark.parametrize("path", sorted(BENCH_PAGES.glob("*.html")), ids=lambda p: p.stem)
def test_saved_pages_convert(path):
    page = html_to_page(path.read_text(encoding="utf-8"), f"https://docs.example.org/{path.name}")
    assert page.title and len(page.lines) > 50 and page.urls
    assert "<script" not in page.text and "</div>" not in page.text
