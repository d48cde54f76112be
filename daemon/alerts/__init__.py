"""Alerts: staff hear at once about rejected, malicious or stuck mail, and nothing floods them.

- `events`   the categories, the payloads (no personal data, R12) and the Japanese texts (pure)
- `settings` the `[alerts]` table of the config file
- `outbox`   the outbox rows, written in the transaction of the change that caused them
- `channels` mail (SMTP, STARTTLS, AUTH), webhook (Slack, Teams, generic JSON), log
- `sender`   the task that delivers the outbox: retry with backoff, one digest per category window
- `watch`    the scanner / mailbox / held / storage watchers: pure state machines and AlertMonitor
"""
