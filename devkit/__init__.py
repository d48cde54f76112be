"""The dev kit: throwaway real services and builders for the tests, the demo, the benchmarks and the samples.

- `devkit.clamd`: a clamd with a test signature database (EICAR, built at run time);
- `devkit.dovecot`: a Dovecot on 127.0.0.1 with its own config and maildir;
- `devkit.ikensho`: the 意見書 (comment form) builders, as Word or Excel;
- `devkit.demo`: the newcomer's demo, `python -m devkit.demo [--once]` (or `scripts/demo`).

It lives in the checkout beside `daemon/` and is **not shipped**: the wheel holds `daemon/` and
`migrations/` only (tests/unit/test_wheel.py checks this). The dev kit builds paths into the checkout
(deploy/, samples/, var/), which an installed copy of the intake does not have.
"""
