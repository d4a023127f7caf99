"""Views, windows, scrolling, find and the cursor stack."""

from __future__ import annotations

import pytest

from agent.errors import ToolRetry
from tools.browser.display import BrowserState, find_page, render, strip_links, window_end
from tools.browser.extract import html_to_page
from tools.browser.page import Page


def count_words(text: str) -> int:
    return len(text.split()) + 1


def long_page(n: int = 300) -> Page:
    body = "".join(f"<p>Paragraph {i} about tides.</p>" for i in range(n))
    return html_to_page(
        f"<html><head><title>Long</title></head><body>{body}</body></html>", "https://long.example.com/"
    )


def test_header_range_and_numbered_lines():
    page = long_page(3)
    text = render(page, 4, 0, count_tokens=count_words)
    lines = text.split("\n")
    assert lines[0] == "[4] Long (https://long.example.com/)"
    assert lines[1] == f"**viewing lines [0 - {len(page.lines) - 1}] of {len(page.lines) - 1}**"
    assert lines[2] == ""
    assert lines[3] == "L0: "
    assert lines[4] == "L1: URL: https://long.example.com/"
    assert lines[5] == "L2: Paragraph 0 about tides."


def test_window_is_sized_by_tokens_and_num_lines_is_exact():
    page = long_page()
    end = window_end(page.lines, 0, -1, count_words, view_tokens=100)
    shown = [f"L{i}: {page.lines[i]}\n" for i in range(end)]
    assert sum(map(count_words, shown)) <= 100
    assert sum(map(count_words, shown)) + count_words(f"L{end}: {page.lines[end]}\n") > 100
    text = render(page, 0, 10, 5, count_tokens=count_words)
    assert "**viewing lines [10 - 14] of" in text
    assert text.count("\nL") == 5


def test_window_with_the_harmony_encoding():
    from tools.browser.display import harmony_token_counter

    count = harmony_token_counter()
    page = long_page()
    end = window_end(page.lines, 0, -1, count, view_tokens=200)
    assert 10 < end < len(page.lines)
    assert count("L2: <|end|> text") > 3  # special-token text counts as plain text


def test_scrolling_past_the_end_is_refused():
    page = long_page(3)
    with pytest.raises(ToolRetry, match=r"Invalid location parameter: `500`. Cannot exceed page maximum of \d+\."):
        render(page, 0, 500, count_tokens=count_words)


def test_cursor_stack_errors_use_the_reference_wording():
    state = BrowserState()
    with pytest.raises(ToolRetry, match="No pages"):
        state.page_at(-1)
    state.push(long_page(2))
    state.push(long_page(2))
    assert state.page_at(-1) is state.stack[1]
    with pytest.raises(ToolRetry, match=r"Cursor `9` is out of range. Available cursor indices: \[0 - 1\]."):
        state.page_at(9)


def test_cache_is_bounded():
    state = BrowserState(cache_size=2)
    for i in range(3):
        state.remember(Page(url=f"https://e.example.com/{i}", title="", text=""))
    assert state.cached("https://e.example.com/0") is None
    assert state.cached("https://e.example.com/2") is not None


def test_find_lists_matches_with_context_and_maps_lines():
    page = long_page(30)
    result = find_page(page, "PARAGRAPH 2")
    assert result.title == "Find results for text: `PARAGRAPH 2` in `Long`"
    assert result.url == "https://long.example.com//find?pattern=PARAGRAPH%202"
    first = page.lines.index("Paragraph 2 about tides.")
    assert result.lines[0] == f"# 【0†match at L{first}】"
    assert result.lines[1] == "Paragraph 2 about tides."
    assert result.line_map[1] == first
    assert result.snippets["0"].line_idx == first and result.snippets["0"].page is page
    # a block shows 4 lines (two paragraphs here) and the scan resumes after it
    assert [s.line_idx for s in result.snippets.values()] == [
        page.lines.index(f"Paragraph {n} about tides.") for n in (2, 20, 22, 24, 26, 28)
    ]
    assert all(
        result.line_map[i] is None or result.lines[i] == page.lines[result.line_map[i]]
        for i in range(len(result.lines))
    )


def test_find_without_match_and_on_link_text():
    page = html_to_page('<p>See <a href="/x">the tide tables</a> now.</p>', "https://t.example.com/")
    assert find_page(page, "tide tables").lines[1] == "See the tide tables now."
    assert find_page(page, "nothing").text == "No `find` results for pattern: `nothing`"


def test_strip_links_handles_markers_cut_by_wrapping():
    assert strip_links("a 【0†great blue heron】 and 【1†x†e.org】.") == "a great blue heron and x."
    assert strip_links("see 【3†great blue ") == "see great blue "
    assert strip_links("heron†other.org】 more") == " more"
