// Package harness is what every storeedge benchmark stands on: child processes that never
// outlive the bench (Start, KillAll), the storeedge daemon's and cloudsim's command lines, an HTTP
// client that talks to 127.0.0.1 only and carries the bench device's credential, the flags the
// sync, startup and http benchmarks share, and the Markdown tables of the report.
//
// Everything it starts listens on 127.0.0.1. docs/PERFORMANCE.md describes the benchmarks.
package harness
