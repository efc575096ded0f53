// Package devices will hold the shop's device registry, pairing, per-device authentication and
// the push channel to devices on TCP 8081 (see DESIGN.md, "Push to devices"). The LAN server
// routes its devices service here once it exists.
package devices
