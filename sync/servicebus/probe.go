package servicebus

import (
	"context"
	"fmt"
)

// Probe connects to the queue exactly as the receiver does (o as for NewReceiver; DB is not
// used) and peeks at one message, which locks nothing and changes nothing: it succeeds when the
// connection string is accepted and the link on the queue opens. doctor uses it while the
// server may be receiving.
func Probe(ctx context.Context, o Options) error {
	r := NewReceiver(o)
	client, err := r.newClient()
	if err != nil {
		return err
	}
	defer client.Close(context.WithoutCancel(ctx))
	rcv, err := client.NewReceiverForQueue(o.Queue, nil)
	if err != nil {
		return fmt.Errorf("servicebus: open receiver for %q: %w", o.Queue, err)
	}
	defer rcv.Close(context.WithoutCancel(ctx))
	if _, err := rcv.PeekMessages(ctx, 1, nil); err != nil {
		return fmt.Errorf("servicebus: open a link on queue %q: %w", o.Queue, err)
	}
	return nil
}
