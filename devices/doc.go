// Package devices is the shop's device registry, pairing, per-device authentication and the push
// channel to devices (DESIGN.md, "Push to devices").
//
// A device pairs once, with a pairing code an admin created or with the shop's enrollment
// secret, and receives its id and secret; from then on it authenticates every API call with
// them (docs/devices.md). The Manager keeps the registry in memory, backed by the database, so
// that authenticating a request costs no query and a revocation is effective the moment it is
// stored. Commands for devices are stored first, then pushed in order over a persistent
// connection that the Manager dials to each device's push port and authenticates with a key
// derived from the device's secret (package push, docs/push-protocol.md).
package devices
