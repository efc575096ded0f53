// Package discovery lets devices find the server with no typing, and lets shop IT see the
// devices that are looking.
//
// The server side is Server (UDP 57854: answers probes, broadcasts announcements, records
// hellos in a bounded "seen" list, every drop counted) and MDNS (the DNS-SD service
// _storeedge._tcp, kept current as interfaces change, withdrawn at stop). The device side is
// Probe, ListenAnnouncements, SayHello and Browse. The datagram format lives in wire.go, apart
// from the socket code, and is specified for device makers in docs/discovery.md.
//
// It is ground floor: it imports no domain package.
package discovery
