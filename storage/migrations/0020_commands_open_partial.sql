-- The indexes of device_commands held every command ever kept (a week of them) keyed by state:
-- each change of state (queued, sent, acknowledged) moved the command's entries to another part
-- of two large indexes, pages a fan-out to 500 devices spread over the whole index and wrote to
-- the WAL again, and a push round grew slower as commands piled up. They now hold only the open
-- commands (queued or sent), a few per device, and the pruning finds the closed ones by when
-- they closed.
DROP INDEX device_commands_open;
DROP INDEX device_commands_expiry;
CREATE INDEX device_commands_open ON device_commands(device_id, seq) WHERE state IN ('queued', 'sent');
CREATE INDEX device_commands_expiry ON device_commands(expires_at) WHERE state IN ('queued', 'sent');
CREATE INDEX device_commands_closed ON device_commands(done_at) WHERE state IN ('acknowledged', 'expired', 'failed');
