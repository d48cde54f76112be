"""The IMAP source: watch one mailbox, decide before downloading, save, then move.

The rooms, in the order a message meets them:

- config.py: the `[imap]` table (`ImapConfig`, `load_imap_config`) and the password (`read_password`);
- watcher.py: `ImapWatcher` stays connected, reconnects with backoff, idles (IDLE or polling) and runs a pass
  whenever there may be mail;
- sync.py: one pass, the walk of one message top to bottom: search → claim → size and date → the size
  decision (R3, daemon/stages/size.py) → body or header block → the record in a worker thread → move;
- session.py: `ImapSession`, every IMAP command with its timeout; `try_login` for `intake check`;
- responses.py: what the server's answers mean (UIDVALIDITY, FETCH items, literals), pure functions;
- client.py: aioimaplib 2.0.3 made safe (its recursive parser dies at ~1,000 lines, iroco-co/aioimaplib#118);
- progress.py: where the watcher stands, for STATUS= and `intake status`.
"""

from daemon.sources.imap.config import DEFAULT_FOLDERS, ImapConfig, load_imap_config, read_password
from daemon.sources.imap.progress import Progress
from daemon.sources.imap.responses import Meta, parse_internaldate, uid_set
from daemon.sources.imap.session import FatalImapError, ImapError, ImapSession, try_login
from daemon.sources.imap.watcher import ImapWatcher

__all__ = [
    "DEFAULT_FOLDERS",
    "FatalImapError",
    "ImapConfig",
    "ImapError",
    "ImapSession",
    "ImapWatcher",
    "Meta",
    "Progress",
    "load_imap_config",
    "parse_internaldate",
    "read_password",
    "try_login",
    "uid_set",
]
