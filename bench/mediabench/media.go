// Package mediabench measures the media service, each figure next to a baseline measured in the
// same run (docs/PERFORMANCE.md):
//
//	media-serve  wrk, 64 connections, on a 1 MiB and a 20 MiB media file: storeedge's media
//	             service vs nginx (Debian's nginx-light, sendfile on) serving the same files from
//	             the same disk
//	media-fetch  the prefetch of a cloudsim container in Azurite (about 2 GB): storeedge vs
//	             rclone copy (Debian's rclone, Azure Blob backend) of the same container; the
//	             daemon's RSS growth during it; and the bandwidth cap's accuracy
package mediabench

import (
	"context"
	"io"

	"github.com/storeedge/storeedge/bench/harness"
)

// Run runs the command cmd: media-serve, media-fetch, or media (both), and prints the tables of
// both together at the end.
func Run(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(cmd, args, stderr)
	if err != nil {
		return err
	}
	r := &harness.Report{}
	switch cmd {
	case "media-serve":
		err = serve(ctx, o, r, stdout)
	case "media-fetch":
		err = fetch(ctx, o, r, stdout)
	default:
		err = serve(ctx, o, r, stdout)
		if err == nil {
			err = fetch(ctx, o, r, stdout)
		}
	}
	r.Print(stdout)
	return err
}
