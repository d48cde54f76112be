"""The fuzz targets: one function of bytes each, raising `Finding` (or any exception) on a bug.

- `parse`: the MIME side of a message: content identity, the header block, the structure check and the parse
  stage (with the body text: part decoding and HTML to text). Must be total: any exception is a finding.
- `classify`: the attachment classifier. It promises never to raise; `classify_error:<Exc>` is a finding.
- one target per extractor (`docx`, `xlsx`, `xls`, `doc`, `jtd`, `jtdc`, `ichitaro-dos`, `txt`): the parser
  runs in this process (as inside the extraction child). `ExtractError` is the parser's lawful "no"; an
  exception raised from our own code (a frame in daemon/) is a finding; one raised inside a third-party
  parser is what the extraction child reports as `corrupt`/`crashed`, not a finding here.

Each call is bounded (a deadline of a few seconds inside the parsers, the structure limits for mail).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Finding(Exception):
    """A bug the fuzzer found (the message names it without quoting the input)."""


def _ours(exc: BaseException) -> bool:
    """Was the exception raised by our own code: a built-in exception (IndexError, KeyError …) whose innermost
    Python frame is under daemon/? A library's own exception type (pyo3's PanicException from calamine) raised
    from a call of ours is the library's failure, which the extraction child reports as `crashed`."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "/daemon/" in frames[-1].filename and type(exc).__module__ == "builtins"


def fuzz_parse(data: bytes) -> None:
    from daemon.model import Arrival, Work
    from daemon.stages.headers import read_headers
    from daemon.stages.identity import content_identity
    from daemon.stages.parse import parse_message
    from daemon.stages.texts import extract_texts

    ident = content_identity(data)
    if ident is not None and len(ident) != 64:
        raise Finding("identity is not a SHA-256")
    work = Work(arrival=Arrival(raw=data, source="fuzz"), sha256=None, content_id=ident, size=len(data))
    read_headers(work)
    parse_message(work)
    if not work.done:
        work.attachments = []  # the attachments' own parsers are the extractor targets
        extract_texts(work)
        for entry in work.result["texts"]:
            if "\r" in next((s.text for s in work.sources if s.source == entry["source"]), ""):
                raise Finding("stored text keeps a CR")


def fuzz_classify(data: bytes) -> None:
    from daemon.stages.classify import classify

    allowed = {"word": ["doc", "docx"], "excel": ["xls", "xlsx"], "text": ["txt"],
               "ichitaro": ["jtd", "jtdc", "jsw"]}
    for name in ("意見.docx", "意見.xls", "意見.txt", "意見.jtd"):
        result = classify(data, name, "application/octet-stream", allowed)
        if (result.detail or "").startswith("classify_error:"):
            raise Finding(result.detail)


def _extractor(fmt: str, kind: str) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        from daemon.extract import ExtractLimits, _dispatch
        from daemon.extract._common import ExtractError

        try:
            _dispatch(data, kind, fmt, ExtractLimits(max_seconds=3.0, max_uncompressed=32 << 20))
        except ExtractError:
            pass
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            if _ours(exc):
                raise
    run.__name__ = f"fuzz_{fmt}"
    return run


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parse": fuzz_parse,
    "classify": fuzz_classify,
    "docx": _extractor("docx", "word"),
    "xlsx": _extractor("xlsx", "excel"),
    "xls": _extractor("xls", "excel"),
    "doc": _extractor("doc", "word"),
    "jtd": _extractor("jtd", "ichitaro"),
    "jtdc": _extractor("jtdc", "ichitaro"),
    "ichitaro-dos": _extractor("ichitaro-dos", "ichitaro"),
    "txt": _extractor("txt", "text"),
}

# Seeds: the real files (../shared/corpus/real), the demo mails and the test fixtures, by target.
_SEED_GLOBS: dict[str, list[str]] = {
    "parse": ["eml/*.eml"],
    "classify": ["msoffice/*", "ichitaro/*"],
    "docx": ["msoffice/*.docx"],
    "xlsx": ["msoffice/*.xlsx"],
    "xls": ["msoffice/*.xls"],
    "doc": ["msoffice/*.doc"],
    "jtd": ["ichitaro/*.jtd", "ichitaro/*.jtt", "ichitaro/*.jfw", "ichitaro/*.jvw"],
    "jtdc": ["ichitaro/*.jtdc", "ichitaro/*.jttc"],
    "ichitaro-dos": ["ichitaro/*.jsw", "ichitaro/*.jaw", "ichitaro/*.jbw"],
    "txt": [],
}


def corpus_dir() -> Path:
    import os

    env = os.environ.get("INTAKE_CORPUS")
    return Path(env) if env else (ROOT.parent / "shared" / "corpus" / "real").resolve()


def seeds(target: str) -> list[bytes]:
    """The seed inputs of a target: real files, demo mails, and every crash found before (fuzz/crashes)."""
    out: list[bytes] = []
    base = corpus_dir()
    for pattern in _SEED_GLOBS[target]:
        out += [p.read_bytes() for p in sorted(base.glob(pattern)) if p.is_file()]
    if target == "parse":
        out += [p.read_bytes() for p in sorted((ROOT / "samples").glob("*.eml"))]
        from fuzz import hostile

        out += [hostile.nested_multipart(40), hostile.many_attachments(5), hostile.unclosed_tags_html(200)]
    if target == "txt":
        out += ["本編 P.1 について。\r\n".encode(enc) for enc in ("utf-8", "cp932", "euc_jp", "iso2022_jp", "utf-16")]
    # Saved crashes seed the next run, except memory blow-ups and aborts inside a third-party parser (named
    # "-oom-" and "-abort-"): the extraction child bounds them (a regression test shows it), and in this process
    # they would stop every run at once.
    out += [p.read_bytes() for p in sorted((ROOT / "fuzz" / "crashes").glob("*")) if p.is_file()
            and crash_target(p) == target and "-oom-" not in p.name and "-abort-" not in p.name]
    return out or [b""]


def crash_target(path: Path) -> str | None:
    """fuzz/crashes/<target>-<name>: the target a saved crash belongs to."""
    for name in sorted(TARGETS, key=len, reverse=True):
        if path.name.startswith(name + "-"):
            return name
    return None
