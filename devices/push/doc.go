// Package push is the wire protocol between the server and a shop device on the device's push
// port (TCP 8081 by default): length-prefixed, versioned frames, each authenticated with
// HMAC-SHA256 under a key derived from the device's pairing secret and bound to the receiver's
// per-connection nonce and a growing sequence number, so that a device can reject forged,
// altered and replayed commands. In version 2 the device acknowledges the server's hello before
// anything else, so that the server can tell the device from a replay of its hello (which is
// bound to nothing); the server still speaks version 1 to devices not yet updated.
// docs/push-protocol.md specifies it for device makers.
//
// frame.go is the format alone (encode, decode, no I/O), conn.go the hello exchange and framed
// reads and writes on a connection.
package push
