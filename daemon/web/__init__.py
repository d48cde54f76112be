"""`intake web`: the staff's web application, in Japanese, over the same database and raw store.

A door beside daemon/cli/: it reads through daemon/staff/ (records, stats, exports) and decides through
daemon/staff/decisions.py, never through the stages. Server-rendered pages (Starlette + Jinja2, autoescaped),
no script at all, so the Content-Security-Policy can forbid every script but none is needed.
"""
