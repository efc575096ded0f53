package doctor

import (
	"context"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// support checks the support namespace's endpoint as the server reaches it, then both queues:
// a link on the request queue (peeked, nothing taken) and a send link on the reply queue
// (nothing sent).
func (w *wanCheck) support(ctx context.Context) {
	const prefix = "support.servicebus."
	s := w.o.Config.Support.ServiceBus
	ep, err := serviceBusEndpoint(config.ServiceBus{ConnectionString: s.ConnectionString, Transport: s.Transport})
	if err != nil {
		w.add(fail("wan", "support", err.Error(), "check "+prefix+"connection_string"))
		return
	}
	ep.name = "support"
	if r, ok := sasExpiryCheck(s.ConnectionString.Reveal(), "support", prefix+"connection_string", w.o.Now()); ok {
		w.add(r)
		if r.Status == Fail {
			return
		}
	}
	if !w.reach(ctx, ep) || w.o.Support == nil {
		return
	}
	conn := w.o.Support()
	if err := servicebus.ProbeReceive(w.ctx(ctx), conn, s.Queue); err != nil {
		w.add(fail("wan", "support link "+s.Queue, err.Error(), serviceBusFix(err, s.Queue, prefix+"connection_string", prefix+"queue")))
	} else {
		w.add(pass("wan", "support link "+s.Queue, "link opened on the request queue "+s.Queue+" (peeked, nothing taken)"))
	}
	if err := servicebus.ProbeSend(w.ctx(ctx), conn, s.ReplyQueue); err != nil {
		w.add(fail("wan", "support link "+s.ReplyQueue, err.Error(), serviceBusFix(err, s.ReplyQueue, prefix+"connection_string", prefix+"reply_queue")))
	} else {
		w.add(pass("wan", "support link "+s.ReplyQueue, "the reply queue "+s.ReplyQueue+" takes answers from this server (nothing sent)"))
	}
}
