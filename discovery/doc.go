// Package discovery will let devices find the server with no typing: UDP 57854 probes and
// announcements, and an mDNS/DNS-SD service (see DESIGN.md, "Discovery"). It is ground floor: it
// imports no domain package.
package discovery
