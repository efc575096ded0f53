// Package support is the remote support channel (docs/remote-support.md): the vendor's support
// sends signed requests on a queue of its support namespace of Azure Service Bus, and the
// server answers each on a reply queue.
//
// The path of a request:
//
//	support queue (peek-lock) → Verifier.Decode: signature (Ed25519, JWS), meant for this shop and
//	server, fresh, a known kind → allowed by the shop? → its id remembered in the database (a
//	replay is refused) → run, the message's lock renewed meanwhile → answer: bounded, secrets
//	removed → sent to the reply queue → the request's message completed
//
// A request refused at any step is dead-lettered with the reason and what was wrong; one that
// could not be answered (the database or the reply queue failing) is abandoned and comes again.
// Every request is logged and counted in Status. The connection is the one every Service Bus
// link of storeedge uses (sync/servicebus): AMQP over WebSockets on 443 through the WAN dialer.
package support
