// Package cloudsim is the reference implementation of the cloud sync API of docs/cloud-api.md,
// for storeedge's tests, demos and benchmarks.
//
// # Catalog
//
// The catalog is deterministic: every document is generated on demand from the seed, the item's
// index and its content version, so a sim of a million products keeps only a few bytes per item
// (revision, version, deleted flag) and a log of the changes made after start. Products have ids
// P0000001…, one price and one stock document each under the same id, and share one media
// manifest per four products (M0000001…). Settings are a dozen store settings keyed by name.
//
// Revisions come from one counter: the initial catalog takes 1..K (products, prices, stock,
// media, settings), and every later change takes the next value.
//
// # Media blobs
//
// With Options.Media on, every media manifest describes a real blob: its name, size, content
// type and content are generated from (seed, index, version) like the documents (blob.go), and
// its md5 is the MD5 of that content. The sim fills an Azure Storage container with them (Azurite
// in tests and benchmarks; again after mutations that change media) or serves them from its own
// Blob-compatible endpoint under /_blob/ (the demo), and GET /v1/config hands out a container URL
// with a SAS valid for MediaOptions.SASLifetime, a new one on every request.
//
// # Feed
//
// An empty cursor starts a snapshot of the live items in id order as of the current head
// revision; after the last item the feed continues with the logged changes after that head, in
// revision order. A change that was superseded by a later change of the same item is skipped:
// the later one carries the item's newest state. Cursors are opaque to clients; they are tied to
// the process that issued them, so a cursor from an earlier run is answered 410 Gone.
//
// # Endpoints
//
// The cloud API, every request with "Authorization: Bearer <store key>":
//
//	GET  /v1/feed/{collection}?cursor=&limit=&stream=   change feed (NDJSON)
//	POST /v1/events                                      event upload, idempotent by key
//	GET  /v1/config                                      remote configuration
//	POST /v1/heartbeat                                   heartbeat, answered 204
//
// The control API for tests, unauthenticated:
//
//	POST /_sim/mutate               apply a Mutation (JSON), answer its MutationResult
//	GET  /_sim/faults               current Faults
//	POST /_sim/faults               replace Faults (JSON; absent fields are zero)
//	GET  /_sim/export/{collection}  every live item as NDJSON {"id","rev","doc","corrupted"}
//	GET  /_sim/stats                Stats
//	GET  /_sim/events               accepted events, in order of acceptance
//	GET  /_sim/heartbeat            the last heartbeat (404 before the first)
//
// With MediaOptions.BuiltIn, the Blob endpoint, GET and HEAD with the SAS of /v1/config, whole or
// ranged (Range or x-ms-range):
//
//	GET  /_blob/media/{blob name}
//
// # Faults
//
// Faults apply to /v1 only. Latency, rate limiting (429 with Retry-After), errors (500 or 503)
// and upload errors (503, nothing stored) are random from a generator seeded by the seed. A cut
// stops a feed response halfway through a line and drops the connection. A malformed line is a
// pure function of (seed, collection, id, rev): while MalformedRate is above zero the same
// change is corrupted every time it is sent, in one of several ways that each break a rule of
// the contract; deletes are never corrupted.
package cloudsim
