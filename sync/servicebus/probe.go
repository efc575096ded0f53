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
	return ProbeReceive(ctx, Connection{ConnectionString: o.ConnectionString, WebSockets: o.WebSockets, DialContext: o.DialContext, TLSConfig: o.TLSConfig}, o.Queue)
}

// ProbeReceive opens a receive link on queue and peeks at one message, as Probe does.
func ProbeReceive(ctx context.Context, c Connection, queue string) error {
	client, err := NewClient(c)
	if err != nil {
		return err
	}
	defer client.Close(context.WithoutCancel(ctx))
	rcv, err := client.NewReceiverForQueue(queue, nil)
	if err != nil {
		return fmt.Errorf("servicebus: open receiver for %q: %w", queue, err)
	}
	defer rcv.Close(context.WithoutCancel(ctx))
	if _, err := rcv.PeekMessages(ctx, 1, nil); err != nil {
		return fmt.Errorf("servicebus: open a link on queue %q: %w", queue, err)
	}
	return nil
}

// ProbeSend opens a send link on queue, as a sender does before its first message, and sends
// nothing: it succeeds when the namespace lets this connection send there.
func ProbeSend(ctx context.Context, c Connection, queue string) error {
	client, err := NewClient(c)
	if err != nil {
		return err
	}
	defer client.Close(context.WithoutCancel(ctx))
	snd, err := client.NewSender(queue, nil)
	if err != nil {
		return fmt.Errorf("servicebus: open sender for %q: %w", queue, err)
	}
	defer snd.Close(context.WithoutCancel(ctx))
	// Making a batch attaches the send link to learn the largest message the queue takes.
	if _, err := snd.NewMessageBatch(ctx, nil); err != nil {
		return fmt.Errorf("servicebus: open a send link on queue %q: %w", queue, err)
	}
	return nil
}
