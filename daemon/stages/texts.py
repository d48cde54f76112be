"""Extract the text of the body and of every allowed attachment (R6–R9 read it next).

The body is the text/plain alternative when there is one, else the HTML turned into text (scripts,
styles and comments dropped; nothing is fetched or run). Attachments are opened only when their
verdict is `allowed`, and each extraction runs bounded in a child process (daemon.extract). Every
source gets a `texts` entry with the decoder that won, the replaced characters and any error; an
error raises the flag `extraction_failed`, never an exception.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any

from daemon.decode import part_text
from daemon.extract import Extraction, extract
from daemon.model import VIRUS, Work
from daemon.stages.comment import TextSource

EXTRACTION_FAILED = "extraction_failed"

_BLOCK = {"p", "div", "br", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
          "section", "article", "ul", "ol", "dl", "dt", "dd", "title"}
_SKIP = {"script", "style", "head", "noscript", "template"}


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCK:
            self.out.append("\n")
        elif tag == "td":
            self.out.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(markup: str) -> str:
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    lines = [" ".join(line.split()) if line.strip() else "" for line in "".join(parser.out).splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return html.unescape(text).strip("\n")


def _entry(source: str, text: str, decoder: str, replaced: int, error: str | None) -> dict[str, Any]:
    return {"source": source, "decoder": decoder, "replaced": replaced, "chars": len(text), "error": error}


def extract_texts(work: Work) -> None:
    if VIRUS in work.reasons:
        return  # malware is evidence, not a comment: nothing of it is opened
    texts: list[dict[str, Any]] = []
    plain = [b for b in work.body_parts if b.role == "text"]
    html_parts = [b for b in work.body_parts if b.role == "html"]
    if plain or html_parts:
        chosen = plain[0] if plain else html_parts[0]
        decoded = part_text(chosen.part)
        body = decoded.text if plain else html_to_text(decoded.text)
        decoder = decoded.decoder if plain else f"html+{decoded.decoder}"
        texts.append(_entry("body", body, decoder, decoded.replaced, None))
        work.sources.append(TextSource("body", body, (), is_body=True))
    for part in work.attachments:
        if part.verdict != "allowed":
            continue
        name = part.filename or f"attachment-{part.position}"
        result: Extraction = extract(part.data, part.kind, part.format)
        texts.append(_entry(name, result.text, result.decoder, result.replaced, result.error))
        if result.error:
            work.add_flag(EXTRACTION_FAILED)
        if result.text:
            work.sources.append(TextSource(name, result.text, result.tables))
    work.result["texts"] = texts
