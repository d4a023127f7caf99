"""Citations in final answers resolve to the URL and lines the model read."""

from __future__ import annotations

from tools.browser.citations import find_citations, render_markdown, split_partial
from tools.browser.display import find_page
from tools.browser.extract import html_to_page

URL = "https://tide.example.com/tables"


def stack():
    body = "".join(f"<p>Entry {i}: high tide at {i % 12}:00.</p>" for i in range(40))
    page = html_to_page(f"<title>Tide tables</title>{body}", URL)
    search = html_to_page(
        '<ul><li><a href="https://a.example.com/x">Result A</a> first</li>'
        '<li><a href="https://b.example.com/y">Result B</a> second</li></ul>',
        url="",
        title="tides",
    )
    search.kind = "search"
    return [search, page, find_page(page, "Entry 17")]


def test_citation_resolves_to_url_and_lines():
    pages = stack()
    text = "High tide is at five 【1†L36-L38】."
    (c,) = find_citations(text, pages)
    assert (c.cursor, c.url, c.line_start, c.line_end, c.valid) == (1, URL, 36, 38, True)
    assert c.title == "Tide tables" and c.domain == "tide.example.com"
    assert c.lines == pages[1].lines[36:39]
    assert text[c.start : c.end] == "【1†L36-L38】"


def test_single_line_and_out_of_range():
    pages = stack()
    one, bad = find_citations("a【1†L5】 b【1†L5-L900】", pages)
    assert (one.line_start, one.line_end, one.line_label) == (5, 5, "L5")
    assert bad.url == URL and not bad.valid and bad.lines == []


def test_find_page_citation_maps_to_the_searched_page():
    pages = stack()
    find = pages[2]
    (c,) = find_citations("【2†L1-L2】", pages)
    target = pages[1].lines.index("Entry 17: high tide at 5:00.")
    assert c.url == URL and c.line_start == target and c.line_end == target + 1
    assert c.lines == find.lines[1:3]


def test_search_page_citation_maps_to_the_cited_result():
    pages = stack()
    line = next(i for i, text in enumerate(pages[0].lines) if "Result B" in text)
    (c,) = find_citations(f"【0†L{line}】", pages)
    assert c.url == "https://b.example.com/y" and c.domain == "b.example.com"


def test_unknown_cursor_stays_plain_text():
    pages = stack()
    (c,) = find_citations("【7†L1】", pages)
    assert c.url is None
    assert render_markdown("see 【7†L1】", pages) == "see 【7†L1】"


def test_markdown_rendering():
    pages = stack()
    assert render_markdown("Five o'clock【1†L36-L38】.", pages) == f"Five o'clock ([tide.example.com L36-L38]({URL}))."
    assert render_markdown("Ok 【1†L4】", pages) == f"Ok ([tide.example.com L4]({URL}))"


def test_partial_citation_is_held_back_while_streaming():
    assert split_partial("tide at five 【1†L3") == ("tide at five ", "【1†L3")
    assert split_partial("tide 【") == ("tide ", "【")
    assert split_partial("done 【1†L3】.") == ("done 【1†L3】.", "")
