"""Direct delivery: the MTA hands each message to the intake over LMTP (Unix socket or TCP) or SMTP.

A 250 means "recorded": the raw bytes are fsync'd in the raw store and the record is committed
(`Intake.process` returns) before the reply is written. Anything that fails before that point is a
451 4.3.0, so the MTA keeps the message and tries again. A scanner that is down is not such a
failure: the pipeline records the message as `held` (durable, retried from the raw store) and we
answer 250.

Size (R3) is decided at the door by `daemon.stages.size`, with the rules in force at that moment (a
reload replaces them). `SIZE` is not announced, so that an MTA hands oversize mail to us instead of bouncing
it unseen (Postfix does); a declared `SIZE=` over the limit still gets 552 at MAIL FROM, an oversize body gets
552 after DATA and is never stored. Every 552 is logged,
counted in the `door_refusals` table (time, size, source, stage; no personal data) and passed to
`on_door_refusal`.

LMTP (RFC 2033) wants one reply per accepted recipient after DATA; aiosmtpd 1.4's LMTP has no such
notion and writes whatever one string the handler returns. Our `handle_DATA` therefore returns one line
per recipient, and the replies aiosmtpd would write itself after DATA (too much data, line too long) are
ours too. All recipients of one transaction share one record: it is one arrival of one message.

The listeners are served on the daemon's own event loop (`loop.create_server` /
`create_unix_server`, no Controller thread); the pipeline runs in a worker thread
(`asyncio.to_thread`), at most `max_transactions` at a time.

  config.py     the `[lmtp]` table (LmtpConfig)
  handler.py    the policy: aiosmtpd's handler hooks, the replies, the recording behind a 250
  server.py     the wire: the protocol classes (only the overrides aiosmtpd cannot serve), start and stop
  refusals.py   the 552s at the door: log, `door_refusals` row, alert
"""

from daemon.sources.lmtp.config import LmtpConfig
from daemon.sources.lmtp.handler import Delivery, DeliveryHandler, received_field
from daemon.sources.lmtp.refusals import on_door_refusal
from daemon.sources.lmtp.server import IntakeLMTP, IntakeSMTP, ListenerError, start_lmtp, stop_lmtp

__all__ = [
    "Delivery",
    "DeliveryHandler",
    "IntakeLMTP",
    "IntakeSMTP",
    "ListenerError",
    "LmtpConfig",
    "on_door_refusal",
    "received_field",
    "start_lmtp",
    "stop_lmtp",
]
