package doctor

import (
	"context"
	"errors"
	"fmt"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/ops/logship"
)

// logIntake checks the log intake as the server reaches it when logs.ship.enabled: DNS, TCP
// through the WAN dialer, TLS, then the key, with an empty batch (which the intake stores
// nothing of).
func (w *wanCheck) logIntake(ctx context.Context) {
	cfg := w.o.Config.Logs.Ship
	ep, err := endpointFromURL("logs", cfg.URL)
	if err != nil {
		w.add(fail("wan", "logs", err.Error(), "check logs.ship.url"))
		return
	}
	if !w.reach(ctx, ep) {
		return
	}
	const check = "logs intake key"
	err = logship.Probe(w.ctx(ctx), w.http, cfg.URL, cfg.APIKey.Reveal(), "storeedge/"+w.o.Version+" doctor")
	switch {
	case errors.Is(err, logship.ErrRefused):
		w.add(fail("wan", check, err.Error(), "check logs.ship.api_key (or "+config.EnvName("logs.ship.api_key")+
			" in the service's environment) and logs.ship.url against what the vendor gave; or turn shipping off with logs.ship.enabled: false"))
	case err != nil:
		w.add(fail("wan", check, fmt.Sprintf("the intake did not take an empty batch: %v", err),
			"if a proxy answers in the intake's place, ask the network team to let it through; otherwise call the vendor's support with this line"))
	default:
		w.add(pass("wan", check, "accepted (an empty batch: nothing stored)"))
	}
}
