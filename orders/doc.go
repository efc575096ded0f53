// Package orders is the orders domain: what an order is, the statuses it moves through and how
// it may move, how a device's order is priced from the shop's catalog, the rules every order
// obeys whatever brought it (a device on the LAN or a Service Bus message), and the stages of
// its ledger.
//
// It is pure: no I/O, no SQL, no HTTP. storage keeps orders in SQL, server decodes what devices
// send and answers them, sync/servicebus decodes the cloud's messages, sync/outbox uploads,
// devices push, and backoffice exports; each of them calls this package for the rules instead of
// stating them again.
package orders
