package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newMetrics is the registry the admin port serves at /metrics: the daemon's own, not the
// library's global one, so that only what is documented in docs/operations.md is exposed. It
// holds the Go runtime and the process (memory, file descriptors, CPU); the server adds the
// HTTP metrics and what the components report.
func newMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
