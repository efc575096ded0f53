// Package backoffice is the exchange between the shop and its back office (ERP), the job of the
// on-premise integration agent: on a schedule it exports the shop's orders, as files in a drop
// folder (JSON, CSV or XML) and by webhook, and imports the stock files the ERP drops in return.
// docs/back-office.md is the contract an ERP integrator builds against.
//
// Each order reaches each export target once. A file target takes orders in batches, each
// recorded in the database (its orders and file name) before its file is written under a
// temporary dot name, synced, and renamed into place; a batch interrupted by a stop, even
// kill -9, is finished at the next start with the same orders under the same name, and a file
// that was already renamed is never written again, so the ERP sees every order once and never a
// half file. The webhook gets one POST per order with an Idempotency-Key, so a POST repeated
// after a stop is recognised by the ERP.
//
// Test mode keeps test orders away from production: while the shop is in test mode only the
// test orders are exported, and only to the test folder; in production mode test orders are
// never exported. Every test order carries the note "TEST" and test=true in every format.
//
// A stock file is applied once (known by its SHA-256) and each of its rows is queued in the
// outbox for the cloud, which owns stock and sends the new level back through the change feed;
// the file then moves to done/, or to failed/ with a .error.txt naming the line at fault.
package backoffice
