"""HTML and plain text to browser pages.

HTML is parsed with lxml, stripped of scripts, styles, navigation chrome and
form controls, its links turned into `【id†text】` markers (with `†domain` for
other sites) and its images into `[Image N: alt]`, then converted to Markdown
by html-to-markdown so headings, lists, tables and code stay readable.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import lxml.etree

from tools.browser.charset import valid_text
from tools.browser.page import Page, display_url, get_domain

# Elements whose content is never page text.
_DROP_TAGS = (
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "frame",
    "object", "embed", "math", "nav", "button", "select", "textarea", "input",
    "option", "datalist", "dialog", "head",
)  # fmt: skip
# Inline tags whose markup carries nothing the model needs (their text stays);
# some sites wrap the whole page in one form.
_UNWRAP_TAGS = (
    "span", "font", "b", "strong", "em", "i", "u", "mark", "small", "big", "ins",
    "label", "form", "fieldset",
)  # fmt: skip
_CHROME_XPATH = lxml.etree.XPath("//*[@hidden or @aria-hidden or @role] | /html/body/header | /html/body/footer")
_CHROME_ROLES = frozenset(("navigation", "search", "menu", "menubar", "banner", "contentinfo"))
_SOURCE_BREAKS = lxml.etree.XPath("//body//text()[contains(., '\n')][not(ancestor::pre or ancestor::textarea)]")
_ANCHOR_MARKS = frozenset(("¶", "#", "§", "🔗"))  # permalink signs next to headings
_SKIP_SCHEMES = ("mailto:", "javascript:", "tel:", "data:", "about:", "blob:")

_CHAR_SUBS = (("【", "〖"), ("】", "〗"), ("\u200b", ""), ("\ufeff", ""))
_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>")
_SPACE_RE = re.compile(r"\s+")
_TRAILING_SPACE_RE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES_RE = re.compile(r"\n{3,}")

_parser = None
_converter = None


def clean_text(text: str) -> str:
    """Replace the characters that could forge link and citation markers; drop zero-width ones."""
    if text.isascii():
        return text
    for old, new in _CHAR_SUBS:
        if old in text:
            text = text.replace(old, new)
    return text


def html_to_page(html: str, url: str, title: str | None = None) -> Page:
    """Turn an HTML document into a page whose text starts with a `URL:` line."""
    global _parser
    url = display_url(url)
    if _parser is None:
        _parser = lxml.etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
    html = _XML_DECL_RE.sub("", clean_text(valid_text(html)), count=1).replace("\r\n", "\n")
    try:
        root = lxml.etree.fromstring(html, _parser) if html.strip() else None
    except (lxml.etree.ParserError, lxml.etree.XMLSyntaxError, ValueError):
        root = None
    if root is None:
        return text_to_page("", url, title)

    if not title:
        node = root.find(".//title")
        title = _text_of(node) if node is not None else ""
    title = title or get_domain(url)

    base = url
    base_node = root.find(".//base[@href]")
    if base_node is not None and url:
        base = urljoin(url, base_node.get("href", ""))

    _drop_chrome(root)
    _replace_images(root)
    urls = _replace_links(root, base, get_domain(url))
    _replace_scripts(root)
    _join_source_lines(root)
    lxml.etree.strip_tags(root, *_UNWRAP_TAGS)

    body = _to_markdown(lxml.etree.tostring(root, encoding="unicode", method="html"))
    return Page(url=url, title=title, text=f"\nURL: {url}\n{body}", urls=urls)


def text_to_page(text: str, url: str, title: str | None = None) -> Page:
    """Turn plain text (or raw source) into a page, keeping its lines as they are."""
    url = display_url(url)
    text = clean_text(valid_text(text)).replace("\r\n", "\n").replace("\r", "\n")
    return Page(url=url, title=title or get_domain(url), text=f"\nURL: {url}\n{text}")


def _drop_chrome(root) -> None:
    for node in _CHROME_XPATH(root):
        if (
            node.tag in ("header", "footer")
            or node.get("hidden") is not None
            or node.get("aria-hidden") == "true"
            or node.get("role") in _CHROME_ROLES
        ):
            _remove(node)
    lxml.etree.strip_elements(root, *_DROP_TAGS, with_tail=False)


def _replace_images(root) -> None:
    for n, img in enumerate(list(root.iter("img"))):
        alt = _merge_space(img.get("alt") or img.get("title") or "")
        _become_text(img, f"[Image {n}: {alt}]" if alt else f"[Image {n}]")


def _replace_links(root, base: str, own_domain: str) -> dict[str, str]:
    urls: dict[str, str] = {}
    ids: dict[str, str] = {}  # absolute URL -> link id
    seen: dict[str, tuple[str, str] | None] = {}  # href -> (link id, domain)
    for a in list(root.iter("a")):
        href = (a.get("href") or "").strip()
        if not href:
            continue
        text = _text_of(a).replace("†", "‡")
        if href[0] == "#":
            _become_text(a, "" if text in _ANCHOR_MARKS else text)
            continue
        if href not in seen:
            seen[href] = _link_target(href, base, urls, ids)
        target = seen[href]
        if target is None or not text:
            _become_text(a, text)
            continue
        link_id, domain = target
        marker = f"【{link_id}†{text}】" if domain == own_domain else f"【{link_id}†{text}†{domain}】"
        _become_text(a, marker)
    return urls


def _link_target(href: str, base: str, urls: dict[str, str], ids: dict[str, str]) -> tuple[str, str] | None:
    """Give the absolute form of `href` a link id (shared by equal URLs); None if not followable."""
    if href.lower().startswith(_SKIP_SCHEMES):
        return None
    try:
        target = urljoin(base, href)
        parts = urlsplit(target)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    if parts.fragment:
        target = target.split("#", 1)[0]
    link_id = ids.get(target)
    if link_id is None:
        link_id = ids[target] = str(len(urls))
        urls[link_id] = target
    return link_id, host


def _replace_scripts(root) -> None:
    for tag, fmt in (("sup", "^{%s}"), ("sub", "_{%s}")):
        for node in list(root.iter(tag)):
            text = _text_of(node)
            _become_text(node, fmt % text if text else "")


def _join_source_lines(root) -> None:
    """Turn line breaks of the HTML source into spaces, outside preformatted text."""
    for text in _SOURCE_BREAKS(root):
        parent = text.getparent()
        if parent is None:
            continue
        if text.is_text:
            parent.text = text.replace("\n", " ")
        else:
            parent.tail = text.replace("\n", " ")


def _become_text(node, text: str) -> None:
    """Replace `node` by an inline span holding `text` (its tail is kept)."""
    tail = node.tail
    node.clear()
    node.tag = "span"
    node.text = text
    node.tail = tail


def _remove(node) -> None:
    """Remove `node` and its content, keeping the text that follows it."""
    parent = node.getparent()
    if parent is None:
        return
    if node.tail:
        prev = node.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


def _text_of(node) -> str:
    return _merge_space("".join(node.itertext()))


def _merge_space(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


def _to_markdown(html: str) -> str:
    global _converter
    if _converter is None:
        _converter = _make_converter()
    text = _TRAILING_SPACE_RE.sub("", _converter(html))
    return _BLANK_LINES_RE.sub("\n\n", text).strip("\n")


def _make_converter():
    import html_to_markdown as h2m

    options = h2m.ConversionOptions(
        extract_metadata=False,
        autolinks=False,
        compact_tables=True,
        preprocessing=h2m.PreprocessingOptions(enabled=False),
    )

    def convert(html: str) -> str:
        return h2m.convert(html, options).content or ""

    return convert
