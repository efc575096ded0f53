// Package server is the LAN HTTP API that the shop's devices (tablets, kiosks, POS, signage) call.
//
// Every answer comes from the local database (package storage): the WAN is never on the request
// path, so the shop keeps working while the cloud is out of reach, and each catalog answer says
// how old its data is (the Storeedge-Synced-At and Storeedge-Data-Age headers).
//
// # Ports
//
// The front door (lan.front_door, 80 by default) carries every service, the health checks and the
// admin status. Each service also has a port of its own (lan.services.<name>: catalog 8000, media
// 8001, orders 8002, devices 8003, events 8004, admin 8005) carrying only that service and the
// health checks, so shop IT can filter per port. A port of 0 turns a listener off; only services
// that have routes open a port.
//
// # Media
//
// The media service (media.go) serves the files of the local media cache (sync/media) with
// http.ServeContent from the open file: Range, conditional requests and HEAD are the standard
// library's, and the bytes go from the page cache to the socket with sendfile, which every
// wrapper of the ResponseWriter keeps reachable by passing io.ReaderFrom through.
//
// # Errors
//
// Every error is an RFC 9457 problem document (application/problem+json) whose type is a URI
// under https://storeedge.dev/problems/ and whose detail says what was wrong and how to fix it.
// Unknown routes are 404 problems, wrong methods 405 problems with an Allow header.
//
// Handlers do not write error answers: a handler is a handlerFunc, func(w, r) error, wrapped by
// Server.handle when its route is registered (r.Get(path, s.handle(s.getThing))). It returns nil
// once it has answered, or an error that handle answers (problem.go):
//
//   - refuse(probBadParameter, detail) for a refusal the handler decides; the parameter and body
//     helpers (limitParam, decodeBody…) return such refusals;
//   - a domain error, wrapped with the operation's name (fmt.Errorf("read order: %w", err)):
//     problemOf maps storage's and the device registry's errors (not found, conflicts, invalid
//     transitions, bad credentials…) to their problems, in one place; whenMissing gives a
//     not-found answer the words that name what was not found;
//   - any other error is a 500 whose detail gives the request id, logged at ERROR with it.
//
// A new kind of domain error gets its case in problemOf, and a new problem type its line in
// docs/openapi.yaml.
//
// A handler that fails after its answer has started (a stream) gets no second header: handle
// logs the error at WARN and the answer ends there. What answers before a handler runs calls
// problem itself: the credential checks, the body limit, a recovered panic, and the listener that
// rewrites net/http's own error answers (rawerrors.go).
//
// The contract is docs/openapi.yaml; a test keeps it and the routes in step.
package server
