"""Staff tools (issue 7): search the intake log, count, group form letters, export the comments for the
「提出された意見及びその考え方」 table, decide on held or rejected mail, and purge by retention class.

Each module is a thin layer over the database and the raw store; `daemon/cli/staff.py` is the command line.
"""
