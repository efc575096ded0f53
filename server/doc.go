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
// The contract is docs/openapi.yaml; a test keeps it and the routes in step.
package server
