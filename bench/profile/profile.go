// Package profile takes CPU, block and mutex profiles of the daemon's own code. The daemon has
// no pprof endpoint, so the profiles run the daemon's packages in this process: feed.Syncer +
// storage for a first sync (Sync), server + storage under wrk for the LAN API (HTTP). Only the
// cloud (cloudsim) and the load generator (wrk) are other processes, so the profile shows
// storeedge's code alone.
package profile

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// profiles are the profile files a command writes.
type profiles struct {
	cpu, block, mutex string
	cpuFile           *os.File
}

func (p *profiles) flags(fs *flag.FlagSet, name string) {
	fs.StringVar(&p.cpu, "cpuprofile", filepath.Join(harness.DefaultWork, name+".cpu.pprof"), "CPU profile `file`")
	fs.StringVar(&p.block, "blockprofile", "", "block profile `file` (waits on channels, locks, the connection pool); empty: none")
	fs.StringVar(&p.mutex, "mutexprofile", "", "mutex contention profile `file`; empty: none")
}

func (p *profiles) start() error {
	if err := os.MkdirAll(filepath.Dir(p.cpu), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p.cpu)
	if err != nil {
		return err
	}
	if p.block != "" {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	}
	if p.mutex != "" {
		runtime.SetMutexProfileFraction(10)
	}
	p.cpuFile = f
	return pprof.StartCPUProfile(f)
}

func (p *profiles) stop(w io.Writer) error {
	pprof.StopCPUProfile()
	errs := []error{p.cpuFile.Close()}
	fmt.Fprintf(w, "CPU profile: %s\n  go tool pprof -top -nodecount=40 %s\n", p.cpu, p.cpu)
	for _, x := range []struct{ name, file string }{{"block", p.block}, {"mutex", p.mutex}} {
		if x.file == "" {
			continue
		}
		f, err := os.Create(x.file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, pprof.Lookup(x.name).WriteTo(f, 0), f.Close())
		fmt.Fprintf(w, "%s profile: %s\n  go tool pprof -top -nodecount=40 %s\n", x.name, x.file, x.file)
	}
	return errors.Join(errs...)
}

// during profiles f: it starts the profiles, runs f, and stops them. f's error comes first.
func (p *profiles) during(w io.Writer, f func() error) error {
	if err := p.start(); err != nil {
		return err
	}
	err := f()
	if perr := p.stop(w); err == nil {
		err = perr
	}
	return err
}
