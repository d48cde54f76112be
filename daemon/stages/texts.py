"""Extract the text of the body and of every allowed attachment (R6–R9 read it next).

The body is the text/plain alternative when there is one, else the HTML turned into text (scripts,
styles and comments dropped; nothing is fetched or run). Attachments are opened only when their
verdict is `allowed`, all of one message in one bounded child process (daemon.extract.extract_many).
Every source gets a `texts` entry with the decoder that won, the replaced characters and any error; an
error raises the flag `extraction_failed`, never an exception.

Bounds (issue 16, the rules' [limits]): the HTML given to text conversion (`limit:html_chars`), the text of
one attachment (`limit:attachment_chars`), of the whole message (`limit:message_chars`) and the cells read
from one sheet (`limit:sheet_cells`): a cut text keeps what was read and says which limit cut it.
HTML goes through lxml's (libxml2) parser with a callback target: linear in its input, where CPython 3.11's
html.parser is quadratic on unclosed tags (CVE-2025-6069: 96,000 of them ran for minutes).

Every stored text has one line-end form, LF, whatever the source (issue 14.3): a body that came over
LMTP with CRLF and the same file given to `intake ingest` have the same `chars` and duplicate keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from daemon.decode import part_text
from daemon.extract import ExtractLimits, Job, extract_many
from daemon.model import VIRUS, Work
from daemon.rules import InputLimits
from daemon.stages.comment import TextSource

EXTRACTION_FAILED = "extraction_failed"
DEFAULT_INPUT_LIMITS = InputLimits()

_BLOCK = {"p", "div", "br", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
          "section", "article", "ul", "ol", "dl", "dt", "dd", "title"}
_SKIP = {"script", "style", "head", "noscript", "template"}
_LINE_ENDS = re.compile(r"\r\n?")
_BLANK_RUNS = re.compile(r"\n{3,}")


def lf(text: str) -> str:
    """One line-end form for every stored text: CRLF and lone CR become LF."""
    return _LINE_ENDS.sub("\n", text) if "\r" in text else text


class _HtmlText:
    """An lxml parser target: callbacks only, no tree is built."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._skip = 0

    def start(self, tag: Any, attrib: Any) -> None:
        name = tag.lower() if isinstance(tag, str) else ""
        if name in _SKIP:
            self._skip += 1
        elif name in _BLOCK:
            self.out.append("\n")
        elif name == "td":
            self.out.append("\t")

    def end(self, tag: Any) -> None:
        name = tag.lower() if isinstance(tag, str) else ""
        if name in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif name in _BLOCK:
            self.out.append("\n")

    def data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)

    def comment(self, text: str) -> None:
        pass

    def close(self) -> str:
        return "".join(self.out)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML body, linear in its size. Character references are resolved by the parser
    (once: "&amp;lt;" stays "&lt;")."""
    from lxml import etree

    if not markup.strip():
        return ""
    parser = etree.HTMLParser(target=_HtmlText(), recover=True, no_network=True, remove_comments=True,
                              remove_pis=True)
    try:
        parser.feed(markup)
        raw: str = parser.close()
    except etree.LxmlError:
        raw = ""
    lines = [" ".join(line.split()) if line.strip() else "" for line in lf(raw).split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


def _entry(source: str, text: str, decoder: str, replaced: int, error: str | None) -> dict[str, Any]:
    return {"source": source, "decoder": decoder, "replaced": replaced, "chars": len(text), "error": error}


def _lf_tables(tables: list[list[list[str]]]) -> list[list[list[str]]]:
    return [[[lf(cell) for cell in row] for row in table] for table in tables]


def extract_texts(work: Work, limits: InputLimits = DEFAULT_INPUT_LIMITS,
                  seconds_left: Callable[[], float] | None = None) -> None:
    if VIRUS in work.reasons:
        return  # malware is evidence, not a comment: nothing of it is opened
    texts: list[dict[str, Any]] = []
    chars_left = limits.max_message_chars
    plain = [b for b in work.body_parts if b.role == "text"]
    html_parts = [b for b in work.body_parts if b.role == "html"]
    if plain or html_parts:
        chosen = plain[0] if plain else html_parts[0]
        decoded = part_text(chosen.part)
        error: str | None = None
        if plain:
            body = lf(decoded.text)
        else:
            markup = decoded.text
            if len(markup) > limits.max_html_chars:
                markup, error = markup[: limits.max_html_chars], "limit:html_chars"
            body = html_to_text(markup)
        if len(body) > chars_left:
            body, error = body[:chars_left], error or "limit:message_chars"
        chars_left -= len(body)
        decoder = decoded.decoder if plain else f"html+{decoded.decoder}"
        texts.append(_entry("body", body, decoder, decoded.replaced, error))
        if error:
            work.add_flag(EXTRACTION_FAILED)
        work.sources.append(TextSource("body", body, (), is_body=True))
    allowed = [part for part in work.attachments if part.verdict == "allowed"]
    extract_limits = ExtractLimits(max_output_chars=limits.max_attachment_chars, max_sheet_cells=limits.max_sheet_cells,
                                   message_chars_left=chars_left)
    results = extract_many([Job(part.data, part.kind, part.format) for part in allowed], extract_limits,
                           seconds_left) if allowed else []
    for part, result in zip(allowed, results, strict=True):
        name = part.filename or f"attachment-{part.position}"
        text = lf(result.text)
        texts.append(_entry(name, text, result.decoder, result.replaced, result.error))
        if result.error:
            work.add_flag(EXTRACTION_FAILED)
        if text:
            work.sources.append(TextSource(name, text, _lf_tables(result.tables)))
    work.result["texts"] = texts
