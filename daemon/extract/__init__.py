"""Text extraction from every allowed attachment format.

`extract(data, kind, fmt, limits)` never raises and never hangs. The format parser runs in a
child process forked from a multiprocessing *forkserver* (which has the parser libraries
preloaded, so a fork costs milliseconds): inside the child RLIMIT_AS caps memory and RLIMIT_CPU
caps CPU time; the parent waits at most `max_seconds` for the result, then kills the child and
reports "timeout". A child that dies without answering (OOM kill, crash in a C extension) is
reported as "memory"/"crashed". Inside the child the parsers also bound themselves: zip members'
declared sizes are checked before anything is inflated (a zip bomb is "too_large" at once), each
read is capped, XML goes through defusedxml, and long loops check a deadline.

`extract_many` runs every attachment of one message in one child, one after the other (10,000 small
attachments cost one fork, not 10,000: issue 16.2); a job that hangs or kills its child is reported alone
and the rest go on in a fresh child. The texts share the message's character budget (`limit:message_chars`).
A child's stderr goes to an anonymous file, never to the service's log: a Rust panic (pyo3's
`PanicException` is a `BaseException`) is caught in the child and becomes `crashed`, and the parent logs one
structured event `extraction_child_failed` with the error class and byte counts (issue 16.5).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from daemon.logs import get_logger

from ._common import ExtractError, Extraction, ExtractLimits, start_deadline

__all__ = ["DEFAULT_LIMITS", "ExtractLimits", "Extraction", "Job", "extract", "extract_in_process", "extract_many"]

log = get_logger("extract")

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


def _failed(fmt: str, code: str, error_class: str | None = None) -> Extraction:
    return Extraction(text="", tables=[], decoder=_DECODER.get(fmt, fmt), replaced=0, error=code,
                      error_class=error_class)


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

        return extract_xlsx(data, deadline, limits.zip, limits.max_sheet_cells)
    if fmt == "xls":
        from .sheet import extract_xls

        return extract_xls(data, deadline, limits.max_sheet_cells)
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
    """Cut text and tables to max_output_chars (or what is left of the message's budget); a cut result carries
    error "limit:attachment_chars" (or "limit:message_chars")."""
    budget, code = limits.max_output_chars, "limit:attachment_chars"
    if limits.message_chars_left is not None and limits.message_chars_left < budget:
        budget, code = max(0, limits.message_chars_left), "limit:message_chars"
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
    return Extraction(text, tables, result.decoder, result.replaced, result.error or code)


def extract_in_process(data: bytes, kind: str, fmt: str, limits: ExtractLimits = DEFAULT_LIMITS) -> Extraction:
    """The extraction itself, in this process: bounded by the parsers' own checks only."""
    try:
        return _bounded(_dispatch(data, kind, fmt, limits), limits)
    except ExtractError as exc:
        return _failed(fmt, exc.code)
    except MemoryError:
        return _failed(fmt, "memory", "MemoryError")
    except RecursionError:
        return _failed(fmt, "corrupt", "RecursionError")
    except Exception as exc:  # any parser failure on malformed input
        return _failed(fmt, "corrupt", exc.__class__.__name__)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a Rust parser's panic: pyo3's PanicException derives from BaseException
        return _failed(fmt, "crashed", exc.__class__.__name__)


@dataclass(frozen=True)
class Job:
    """One attachment to extract."""

    data: bytes
    kind: str
    fmt: str


def _charge(result: Extraction) -> int:
    """What one extraction costs of the message's character budget."""
    return len(result.text)


def _stderr_to_file() -> Any:
    """The child's fd 2 goes to an anonymous file: a Rust panic or a warning never reaches the service's
    stderr raw; the parent logs one structured event instead (with the byte count, never the text)."""
    import os
    import tempfile

    sink = tempfile.TemporaryFile()
    os.dup2(sink.fileno(), 2)
    return sink


def _child(conn: Connection, jobs: list[Job], limits: ExtractLimits) -> None:
    """Extract `jobs` one after the other and send (index, Extraction, stderr bytes) after each one."""
    import os
    import resource

    sink = None
    try:
        sink = _stderr_to_file()
    except OSError:
        pass
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory_bytes, limits.max_memory_bytes))
    except (ValueError, OSError):
        pass
    left = limits.message_chars_left
    for index, job in enumerate(jobs):
        # CPU seconds for this job alone: the soft limit moves on with the CPU already used.
        try:
            used = resource.getrusage(resource.RUSAGE_SELF)
            soft = int(used.ru_utime + used.ru_stime + limits.max_seconds) + 2
            _cur, hard = resource.getrlimit(resource.RLIMIT_CPU)
            resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard),
                                                     hard))
        except (ValueError, OSError):
            pass
        if left is not None and left <= 0:
            result = _failed(job.fmt, "limit:message_chars")
        else:
            try:
                result = extract_in_process(job.data, job.kind, job.fmt,
                                            dataclasses.replace(limits, message_chars_left=left))
            except MemoryError:
                result = _failed(job.fmt, "memory", "MemoryError")
        if left is not None:
            left -= _charge(result)
        written = os.fstat(2).st_size if sink is not None else 0
        try:
            conn.send((index, result, written))
        except MemoryError:
            conn.send((index, _failed(job.fmt, "memory", "MemoryError"), written))
    conn.close()


_ctx_lock = threading.Lock()
_ctx: Any = None
children_started = 0  # extraction children forked by this process (tests count them: one per message)


def _context() -> Any:
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
            _ctx = ctx
        return _ctx


def _log_failure(result: Extraction, stderr_bytes: int, exitcode: int | None = None) -> None:
    """One structured event for a child's failure: the error class and sizes, never the child's raw output
    (a Rust panic message or a traceback may quote the document)."""
    if result.error_class is None and exitcode is None and not stderr_bytes:
        return
    log.warning("extraction_child_failed", error=result.error, error_class=result.error_class,
                format=result.decoder, exitcode=exitcode, stderr_bytes=stderr_bytes)


def _batch(jobs: list[Job], first: int, results: list[Extraction | None], limits: ExtractLimits,
           seconds_left: Callable[[], float] | None) -> int:
    """Run jobs[first:] in one child; fill `results` as they come. Returns where the next child must start
    (after the job that hung or killed this one), or len(jobs)."""
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(sender, jobs[first:], limits), daemon=True)
    stderr_seen = 0
    try:
        global children_started
        try:
            proc.start()
            children_started += 1
        except AssertionError:  # called from a daemonic process, which may not have children
            sender.close()
            for i in range(first, len(jobs)):
                job = jobs[i]
                results[i] = extract_in_process(job.data, job.kind, job.fmt, limits)
            return len(jobs)
        sender.close()
        for i in range(first, len(jobs)):
            # the child's clock starts after the fork: allow a little for process start-up (the very first
            # call also waits for the forkserver to import the parser libraries)
            wait = limits.max_seconds + min(2.0, max(0.5, limits.max_seconds))
            if seconds_left is not None:
                wait = max(0.0, min(wait, seconds_left()))
            if receiver.poll(wait):
                try:
                    index, result, stderr_total = receiver.recv()
                except (EOFError, OSError):
                    index = None
                if index is not None and isinstance(result, Extraction):
                    results[first + index] = result
                    _log_failure(result, stderr_total - stderr_seen)
                    stderr_seen = stderr_total
                    continue
                proc.join(2.0)
                if proc.exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
                    code = "timeout" if proc.exitcode == -signal.SIGXCPU else "memory"
                else:
                    code = "crashed"
                results[i] = _failed(jobs[i].fmt, code, f"exit:{proc.exitcode}")
                _log_failure(results[i], 0, proc.exitcode)  # type: ignore[arg-type]
                return i + 1
            if seconds_left is not None and seconds_left() <= 0:
                # the message's own budget is spent: nothing more of it is opened
                for j in range(i, len(jobs)):
                    results[j] = _failed(jobs[j].fmt, "timeout")
                return len(jobs)
            results[i] = _failed(jobs[i].fmt, "timeout")
            return i + 1
        return len(jobs)
    finally:
        receiver.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
        if proc.exitcode is not None:
            proc.close()


def extract_many(jobs: list[Job], limits: ExtractLimits = DEFAULT_LIMITS,
                 seconds_left: Callable[[], float] | None = None) -> list[Extraction]:
    """Extract every job, in one child for the lot (10,000 small attachments are one fork, not 10,000); a job
    that hangs or kills the child is reported alone and the rest go on in a new child. Each job has
    `limits.max_seconds`; `seconds_left` (the message's watchdog) caps every wait. Never raises."""
    results: list[Extraction | None] = [None] * len(jobs)
    first = 0
    while first < len(jobs):
        left = limits.message_chars_left
        if left is not None:
            left -= sum(_charge(r) for r in results[:first] if r is not None)
        try:
            first = _batch([*jobs], first, results, dataclasses.replace(limits, message_chars_left=left),
                           seconds_left)
        except Exception:
            for i in range(first, len(jobs)):
                results[i] = results[i] or _failed(jobs[i].fmt, "internal")
            break
    return [r if r is not None else _failed(j.fmt, "internal") for r, j in zip(results, jobs, strict=True)]


def extract(data: bytes, kind: str, fmt: str, limits: ExtractLimits = DEFAULT_LIMITS) -> Extraction:
    """Extract the text of one attachment; every failure is an Extraction with `error` set."""
    return extract_many([Job(bytes(data), kind, fmt)], limits)[0]
