package doctor

import (
	"context"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// DefaultTimeout bounds each WAN check.
const DefaultTimeout = 15 * time.Second

// Options configure Run.
type Options struct {
	Config config.Config
	// ConfigPath is the configuration file in effect, "" when there is none.
	ConfigPath string
	// Dialer is the WAN dialer built from Config as the server builds it.
	Dialer *wan.Dialer
	// ServiceBus gives the options the server receives orders with, for a queue; nil when
	// servicebus.enabled is false.
	ServiceBus func(queue string) servicebus.Options
	// Support gives the connection the server answers support requests with; nil when
	// support.servicebus.enabled is false.
	Support func() servicebus.Connection
	// Version is storeedge's, sent in the User-Agent.
	Version string
	// ServiceUser is the account the service runs as (the Linux packages' and the container
	// image's "storeedge"); when doctor runs as root, the data folder must be writable by it, and
	// a LAN port held by a process of it is the running service's. "" skips those checks.
	ServiceUser string
	// Sandbox returns the folders the service may write to when its service manager confines it
	// (the packages' systemd unit: ProtectSystem=strict), ok false when it does not or that is
	// not known; nil skips the check.
	Sandbox func() (writable []string, ok bool)
	// Timeout bounds each WAN check; 0 means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock the server's Date headers are compared with; nil means time.Now.
	Now func() time.Time
}

// Run runs every check that applies to the configuration and returns the results. It changes
// nothing: it binds ports only to release them at once, reads the database, and peeks at the
// Service Bus queue without taking a message.
func Run(ctx context.Context, o Options) Report {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var r Report
	r.Version = o.Version
	r.Results = append(r.Results, checkConfigFile(o.ConfigPath, o.Config, o.ServiceUser)...)
	r.Results = append(r.Results, checkDataDir(ctx, o)...)
	r.Results = append(r.Results, checkFolders(o)...)
	r.Results = append(r.Results, checkPorts(o.Config, o.ServiceUser)...)
	r.Results = append(r.Results, checkInterfaces(o.Config)...)
	r.Results = append(r.Results, checkWAN(ctx, o)...)
	hideSecrets(r.Results, o.Config.SecretValues())
	return r
}

// hideSecrets replaces, in what the results say, each secret value of the configuration (as the
// log's redaction finds them) that a dependency's error may have echoed: the report is
// printed, and often pasted into a ticket (configuration.md: secrets are never shown).
func hideSecrets(results []Result, secrets []string) {
	red := logship.NewRedactor(secrets)
	for i := range results {
		results[i].Check = red.Secrets(results[i].Check)
		results[i].Detail = red.Secrets(results[i].Detail)
		results[i].Fix = red.Secrets(results[i].Fix)
	}
}
