"""Browser page processing: saved HTML pages to the numbered lines the model reads.

    python -m benchmarks.bench_browser

The pages are real documentation pages under `benchmarks/pages/` (see the
LICENSES file there). The reference design is the gpt-oss reference pipeline
(lxml link rewriting, then a Python HTML-to-Markdown converter, then
`textwrap`) rebuilt minimally with markdownify in place of html2text, whose
GPL licence keeps it out of this project; it is measured when markdownify is
installed.
"""

from __future__ import annotations

import re
import statistics
import textwrap
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

PAGES = Path(__file__).parent / "pages"


def _ours(html: str, url: str) -> str:
    from tools.browser.extract import html_to_page

    page = html_to_page(html, url)
    return "\n".join(f"L{i}: {line}" for i, line in enumerate(page.lines))


def _reference_factory():
    """The reference design, or None when markdownify is not installed."""
    try:
        import lxml.etree
        import lxml.html
        from markdownify import markdownify
    except ImportError:
        return None

    smp = re.compile("[\U00010000-\U0001ffff]")

    def put_text(node, text: str) -> None:
        parent, prev = node.getparent(), node.getprevious()
        tail = node.tail or ""
        if prev is None:
            parent.text = (parent.text or "") + text + tail
        else:
            prev.tail = (prev.tail or "") + text + tail
        parent.remove(node)

    def process(html: str, url: str) -> str:
        html = re.sub(r"^\s*<\?xml[^>]*\?>", "", html)
        html = smp.sub("", html).replace("【", "〖").replace("】", "〗").replace("\u200b", "")
        root = lxml.html.fromstring(html)
        own = urlsplit(url).netloc
        ids: dict[str, str] = {}
        for a in root.findall(".//a[@href]"):
            href = a.get("href")
            text = " ".join(" ".join(a.itertext()).split()).replace("†", "‡")
            if href.startswith(("mailto:", "javascript:")) or not text:
                continue
            if href.startswith("#"):
                put_text(a, text)
                continue
            target = urljoin(url, href)
            domain = urlsplit(target).netloc
            link_id = ids.setdefault(target, str(len(ids)))
            put_text(a, f"【{link_id}†{text}】" if domain == own else f"【{link_id}†{text}†{domain}】")
        for n, img in enumerate(root.findall(".//img")):
            alt = img.get("alt")
            put_text(img, f"[Image {n}: {alt}]" if alt else f"[Image {n}]")
        for node in root.findall(".//math"):
            node.getparent().remove(node)
        text = markdownify(lxml.etree.tostring(root, encoding="unicode"), strip=["a", "img"])
        text = re.sub(r"\n(\s*\n)+", "\n\n", re.sub(r"^\s+$", "", text, flags=re.M)).strip()
        text = f"\nURL: {url}\n{text}"
        lines = []
        for line in text.split("\n"):
            lines.extend(textwrap.wrap(line, 80, replace_whitespace=False, drop_whitespace=False) or [""])
        return "\n".join(f"L{i}: {line}" for i, line in enumerate(lines))

    return process


def _per_page_medians(fn, docs, repeats: int) -> list[list[float]]:
    """For each repeat, the time of every page, in ms."""
    rounds = []
    for _ in range(repeats):
        times = []
        for name, html in docs:
            started = time.perf_counter()
            fn(html, f"https://docs.example.org/{name}")
            times.append((time.perf_counter() - started) * 1e3)
        rounds.append(times)
    return rounds


def _summary(rounds: list[list[float]]) -> tuple[float, float]:
    per_page = [statistics.median(column) for column in zip(*rounds, strict=True)]
    per_round = [statistics.median(r) for r in rounds]
    return statistics.median(per_page), max(per_round) - min(per_round)


def run(quick: bool = False) -> list[dict]:
    repeats = 2 if quick else 9
    docs = [(p.name, p.read_text(encoding="utf-8")) for p in sorted(PAGES.glob("*.html"))]
    size_mb = sum(len(html.encode()) for _, html in docs) / 1e6
    _ours(*docs[0][::-1])  # warm-up: imports and converter set-up
    ours, ours_spread = _summary(_per_page_medians(_ours, docs, repeats))
    row = {
        "name": f"HTML to numbered lines, median per page ({len(docs)} pages, {size_mb:.1f} MB)",
        "median_ms": ours,
        "spread_ms": ours_spread,
        "reference": None,
        "reference_ms": None,
        "ratio_vs_reference": None,
    }
    reference = _reference_factory()
    if reference is not None:
        ref, _ = _summary(_per_page_medians(reference, docs, max(1, repeats // 3)))
        row.update(
            reference="gpt-oss reference pipeline with markdownify",
            reference_ms=ref,
            ratio_vs_reference=ours / ref,
        )
    return [row, _first_view_row(docs, repeats)]


def _first_view_row(docs, repeats: int) -> dict:
    """Rendering the first view of a processed page: windowing by Harmony tokens."""
    from tools.browser.display import harmony_token_counter, render
    from tools.browser.extract import html_to_page

    count = harmony_token_counter()
    pages = [html_to_page(html, f"https://docs.example.org/{name}") for name, html in docs]
    rounds = []
    for _ in range(repeats):
        times = []
        for page in pages:
            started = time.perf_counter()
            render(page, 0, 0, count_tokens=count)
            times.append((time.perf_counter() - started) * 1e3)
        rounds.append(times)
    median, spread = _summary(rounds)
    return {
        "name": "first view of a page (1024-token window)",
        "median_ms": median,
        "spread_ms": spread,
        "ratio_vs_reference": None,
    }


if __name__ == "__main__":
    for result in run():
        print(result)
