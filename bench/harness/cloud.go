package harness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// StoreKey is the store key of the bench's cloudsim. It is not a secret.
const StoreKey = "bench-store-key"

// Cloud is how the bench runs cloudsim, the reference cloud.
type Cloud struct {
	Bin      string
	Products int
	Seed     int64         // 0: cloudsim's default
	Env      []string      // more environment, e.g. the Blob container to fill with media
	Ready    time.Duration // longest cloudsim may take to listen (it fills a media container first)
}

// StartCloud starts cloudsim with the bench's store key and returns it and its URL once it
// listens.
func StartCloud(ctx context.Context, c Cloud) (*Proc, string, error) {
	args := []string{"-listen", "127.0.0.1:0", "-products", strconv.Itoa(c.Products)}
	if c.Seed != 0 {
		args = append(args, "-seed", strconv.FormatInt(c.Seed, 10))
	}
	args = append(args, "-store-key", StoreKey)
	addr := make(chan string, 1)
	p, err := Start("cloudsim", c.Bin, args, c.Env, func(line string, _ time.Time) {
		if u, ok := strings.CutPrefix(line, "cloudsim listening on "); ok {
			select {
			case addr <- strings.TrimSpace(u):
			default:
			}
		}
	})
	if err != nil {
		return nil, "", err
	}
	t := time.NewTimer(c.Ready)
	defer t.Stop()
	select {
	case u := <-addr:
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			p.Kill()
			return nil, "", fmt.Errorf("cloudsim listens on %q, not on 127.0.0.1", u)
		}
		return p, u, nil
	case <-p.done:
		return nil, "", p.ExitErr()
	case <-ctx.Done():
		p.Kill()
		return nil, "", ctx.Err()
	case <-t.C:
		p.Kill()
		return nil, "", fmt.Errorf("cloudsim did not say where it listens within %v; its output:\n%s", c.Ready, p.Tail())
	}
}
