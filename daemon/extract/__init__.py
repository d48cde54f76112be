"""Text extraction from every allowed attachment format.

`extract(data, kind, fmt, limits)` never raises and never hangs. The format parser runs in a
child process forked from a multiprocessing *forkserver* (which has the parser libraries
preloaded, so a fork costs milliseconds): inside the child RLIMIT_AS caps memory and RLIMIT_CPU
caps CPU time; the parent waits at most `max_seconds` for the result, then kills the child and
reports "timeout". A child that dies without answering (OOM kill, crash in a C extension) is
reported as "memory"/"crashed". Inside the child the parsers also bound themselves: zip members'
declared sizes are checked before anything is inflated (a zip bomb is "too_large" at once), each
read is capped, XML goes through defusedxml, and long loops check a deadline.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from ._common import ExtractError, Extraction, ExtractLimits, start_deadline

__all__ = ["DEFAULT_LIMITS", "ExtractLimits", "Extraction", "extract", "extract_in_process"]

DEFAULT_LIMITS = ExtractLimits()

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DECODER = {
    "docx": "docx",
    "xlsx": "xlsx",
    "xls": "xls",
    "doc": "doc-piece-table",
    "jtd": "ichitaro-documenttext",
    "jtdc": "ichitaro-lha",
    "ichitaro-dos": "ichitaro-dos",
    "txt": "text",
}
# "__main__": the forkserver imports the main script once, so that each child does not run it again
# (multiprocessing re-imports the parent's __main__ in every child it starts: for `intake` that is
# daemon.cli, SQLAlchemy and the rest, about a second of CPU per extraction — measured by bench/).
# "daemon.cli" (the command-line package and what it imports) is loaded once in the forkserver, so the
# children forked from it start with it imported, whichever way `intake` was started.
_PRELOAD = [
    "__main__",
    "daemon.cli",
    "daemon.extract",
    "daemon.extract.docx",
    "daemon.extract.doc",
    "daemon.extract.sheet",
    "daemon.extract.ichitaro",
    "daemon.extract.text",
    "olefile",
    "lhafile",
    "python_calamine",
    "defusedxml.ElementTree",
]


def _failed(fmt: str, code: str) -> Extraction:
    return Extraction(text="", tables=[], decoder=_DECODER.get(fmt, fmt), replaced=0, error=code)


def _ooxml_encrypted(data: bytes) -> bool:
    import olefile

    try:
        ole = olefile.OleFileIO(data)
        return bool(ole.exists("EncryptedPackage") or ole.exists("EncryptionInfo"))
    except Exception:
        return False


def _dispatch(data: bytes, kind: str, fmt: str, limits: ExtractLimits) -> Extraction:
    deadline = start_deadline(limits.max_seconds)
    if fmt in ("docx", "xlsx") and data.startswith(_OLE_MAGIC):
        raise ExtractError("encrypted" if _ooxml_encrypted(data) else "corrupt")
    if fmt == "docx":
        from .docx import extract_docx

        return extract_docx(data, deadline, limits.zip)
    if fmt == "xlsx":
        from .sheet import extract_xlsx

        return extract_xlsx(data, deadline, limits.zip)
    if fmt == "xls":
        from .sheet import extract_xls

        return extract_xls(data, deadline)
    if fmt == "doc":
        from .doc import extract_doc

        return extract_doc(data, deadline)
    if fmt == "jtd":
        from .ichitaro import extract_jtd

        return extract_jtd(data, deadline)
    if fmt == "jtdc":
        from .ichitaro import extract_jtdc

        return extract_jtdc(data, deadline, limits.max_uncompressed)
    if fmt == "ichitaro-dos":
        from .ichitaro import extract_dos

        return extract_dos(data, deadline)
    if fmt == "txt" or kind == "text":
        from .text import extract_text

        return extract_text(data)
    raise ExtractError(f"unsupported:{fmt}")


def _bounded(result: Extraction, limits: ExtractLimits) -> Extraction:
    """Cut text and tables to max_output_chars; a cut result carries error "too_large"."""
    budget = limits.max_output_chars
    cut = len(result.text) > budget
    text = result.text[:budget]
    tables: list[list[list[str]]] = []
    used = 0
    for table in result.tables:
        rows: list[list[str]] = []
        for row in table:
            used += sum(len(c) for c in row) + len(row)
            if used > budget:
                cut = True
                break
            rows.append(row)
        tables.append(rows)
        if used > budget:
            break
    if not cut:
        return result
    return Extraction(text, tables, result.decoder, result.replaced, result.error or "too_large")


def extract_in_process(data: bytes, kind: str, fmt: str, limits: ExtractLimits = DEFAULT_LIMITS) -> Extraction:
    """The extraction itself, in this process: bounded by the parsers' own checks only."""
    try:
        return _bounded(_dispatch(data, kind, fmt, limits), limits)
    except ExtractError as exc:
        return _failed(fmt, exc.code)
    except MemoryError:
        return _failed(fmt, "memory")
    except RecursionError:
        return _failed(fmt, "corrupt")
    except Exception:  # any parser failure on malformed input
        return _failed(fmt, "corrupt")


def _child(conn: Connection, data: bytes, kind: str, fmt: str, limits: ExtractLimits) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory_bytes, limits.max_memory_bytes))
        cpu = int(limits.max_seconds) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (ImportError, ValueError, OSError):
        pass
    try:
        result = extract_in_process(data, kind, fmt, limits)
    except MemoryError:
        result = _failed(fmt, "memory")
    try:
        conn.send(result)
    except MemoryError:
        conn.send(_failed(fmt, "memory"))
    conn.close()


_ctx_lock = threading.Lock()
_ctx: Any = None


def _context() -> Any:
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
            _ctx = ctx
        return _ctx


def _run_child(data: bytes, kind: str, fmt: str, limits: ExtractLimits) -> Extraction:
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(sender, data, kind, fmt, limits), daemon=True)
    try:
        try:
            proc.start()
        except AssertionError:  # called from a daemonic process, which may not have children
            sender.close()
            return extract_in_process(data, kind, fmt, limits)
        sender.close()
        # the child's clock starts after the fork: allow a little for process start-up (the very
        # first call also waits for the forkserver to import the parser libraries)
        if receiver.poll(limits.max_seconds + min(2.0, max(0.5, limits.max_seconds))):
            try:
                result = receiver.recv()
            except (EOFError, OSError):
                result = None
            if isinstance(result, Extraction):
                return result
            proc.join(2.0)
            if proc.exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
                return _failed(fmt, "timeout" if proc.exitcode == -signal.SIGXCPU else "memory")
            return _failed(fmt, "crashed")
        return _failed(fmt, "timeout")
    finally:
        receiver.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
        if proc.exitcode is not None:
            proc.close()


def extract(data: bytes, kind: str, fmt: str, limits: ExtractLimits = DEFAULT_LIMITS) -> Extraction:
    """Extract the text of one attachment; every failure is an Extraction with `error` set."""
    try:
        return _run_child(bytes(data), kind, fmt, limits)
    except Exception:
        return _failed(fmt, "internal")
