// Package logship sends the daemon's log records, redacted, to an HTTPS log intake through the
// WAN dialer (docs/remote-support.md is the contract it keeps).
//
// The path of a record:
//
//	slog call → Handler (tee: the local handler as before, and a copy) → bounded queue
//	  → writer goroutine: redaction, JSON → disk buffer (spool, under data_dir)
//	  → Run: batches, gzip, POST through the WAN proxy, retries with backoff and Retry-After
//
// Logging never waits for the network or the disk: the Handler only copies the record's values
// and offers it to the queue, and drops it (counted) if the queue is full. The disk buffer
// survives restarts; when it is full the oldest records are dropped and counted, and a record
// saying so is shipped in their place. A record leaves the buffer only once the intake accepted
// it (2xx) or refused it for good (400, 422: counted as rejected).
package logship
