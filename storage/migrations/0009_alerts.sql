-- Alerts by e-mail (ops/alerts): the state of each alert rule, and the mails waiting to go.

-- A rule whose condition holds has a row: pending until it has held long enough, then open.
-- The row goes when the alert resolves (or when the condition stops before it opened).
--   rule           the rule's name: wan_down, upload_waiting, …
--   pending_since  Unix ms: since when the condition holds
--   opened_at      Unix ms: when the alert opened and its mail was queued; 0 while pending
--   last_active    Unix ms: the last check at which the condition held
--   summary        one line: what is wrong, as the status and the mails say it
--   detail         more lines of facts for the mail
CREATE TABLE alert_state (
    rule          TEXT PRIMARY KEY,
    pending_since INTEGER NOT NULL,
    opened_at     INTEGER NOT NULL DEFAULT 0,
    last_active   INTEGER NOT NULL,
    summary       TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- One row per notice (an alert opened or resolved), queued in the same transaction as the
-- state change, until a mail carrying it is accepted by the mail server. Sent rows are kept a
-- while: they count against the hourly limit.
--   event       opened or resolved
--   at          Unix ms: when it happened
--   attempts    failed attempts to send it
--   last_error  why the last attempt failed
--   sent_at     Unix ms: when the mail server accepted it; 0 while queued
--   mail        the id of the first notice of the mail that carried it (a digest carries several)
CREATE TABLE alert_mail (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    rule       TEXT NOT NULL,
    event      TEXT NOT NULL,
    at         INTEGER NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at    INTEGER NOT NULL DEFAULT 0,
    mail       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alert_mail_queued ON alert_mail(id) WHERE sent_at = 0;
CREATE INDEX alert_mail_sent ON alert_mail(sent_at) WHERE sent_at != 0;
