package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/doctor"
	"github.com/storeedge/storeedge/sync/servicebus"
)

const doctorUsage = `Usage: storeedge doctor [--config PATH] [--set KEY=VALUE ...] [--json] [--timeout 15s]

Checks everything the server needs, from the configuration in effect, and prints one line per
check: PASS, WARN or FAIL, and under each line that did not pass the fix in one sentence.
  config  the configuration file's permissions (it may hold secrets)
  data    data_dir writable (by the service account too), free space, the database's quick check
          and schema version
  lan     each LAN port free or held by the running service (else which program holds it),
          the interfaces discovery announces on
  wan     for the cloud, Service Bus, Blob storage, the log intake (logs.ship.enabled) and the
          support namespace (support.servicebus.enabled): DNS, TCP directly or through the
          proxy, TLS (a certificate from a TLS-inspecting proxy is recognised), the store key,
          the Service Bus link on the queue, the Blob container, the log intake's key, the
          support queues
  clock   this machine's clock against the servers' Date headers
Run it as root (Linux) or as an administrator (Windows), with the service's environment, on the
server's machine; the service may be running. It changes nothing and takes no order off the queue.
Exit code: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 when the
configuration cannot be read. docs/install.md explains each line.
`

// cmdDoctor is "storeedge doctor".
func cmdDoctor(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	var asJSON bool
	var timeout time.Duration
	var fs *flag.FlagSet
	// A missing store key is one of doctor's findings, not a reason not to run.
	cfg, err := loadConfigWith("doctor", doctorUsage, args, env, stderr, func(f *flag.FlagSet) {
		fs = f
		f.BoolVar(&asJSON, "json", false, "print the results as JSON")
		f.DurationVar(&timeout, "timeout", doctor.DefaultTimeout, "longest time for each WAN check")
	}, "cloud.store_key")
	if err != nil {
		return err
	}
	if timeout <= 0 || timeout > 5*time.Minute {
		return usageError{fmt.Errorf("doctor: --timeout %s: want more than 0s and at most 5m", timeout)}
	}
	dialer, err := newWANDialer(cfg)
	if err != nil {
		return usageError{err}
	}
	report := doctor.Run(ctx, doctorOptions(cfg, dialer, config.ResolvePath(fs.Lookup("config").Value.String(), env), timeout))
	if asJSON {
		err = report.WriteJSON(stdout)
	} else {
		err = report.WriteTable(stdout)
	}
	if err != nil {
		return err
	}
	if report.Failed() {
		return errDoctorFailed
	}
	return nil
}

// doctorOptions are the checks of the configuration cfg (read from configPath), each WAN check
// bounded by timeout; the support channel's diagnostics runs them too.
func doctorOptions(cfg config.Config, dialer *wan.Dialer, configPath string, timeout time.Duration) doctor.Options {
	o := doctor.Options{
		Config:     cfg,
		ConfigPath: configPath,
		Dialer:     dialer,
		Version:    buildVersion(),
		Timeout:    timeout,
	}
	if runtime.GOOS == "linux" {
		o.ServiceUser = "storeedge" // the packages' system user
		o.Sandbox = doctor.SystemdSandbox("storeedge")
	}
	if cfg.ServiceBus.Enabled {
		o.ServiceBus = func(queue string) servicebus.Options { return serviceBusOptions(cfg, dialer, queue) }
	}
	if cfg.Support.ServiceBus.Enabled {
		o.Support = func() servicebus.Connection { return supportConnection(cfg, dialer) }
	}
	return o
}

// errDoctorFailed makes the exit code 1 without repeating the report.
var errDoctorFailed = errors.New("doctor: a check failed (see above)")
