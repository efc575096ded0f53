package doctor

import (
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/ops/logship/logshiptest"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
	"github.com/storeedge/storeedge/tools/testenv"
)

// With log shipping on, doctor checks the intake through the proxy and its key; off, it leaves
// the intake alone.
func TestLogIntake(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	url := startCloud(t, ca, cloudsim.Options{}, nil)
	in := logshiptest.StartWithCA(t, "logs-key-0123456789", ca)
	intake := strings.TrimSuffix(strings.TrimPrefix(in.URL, "https://"), "/v1/input")
	shipping := func(key string) config.Config {
		c := testConfig(t, ca, url)
		c.WAN.Proxy = config.Proxy("http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{}))
		c.Logs.Ship.Enabled, c.Logs.Ship.URL, c.Logs.Ship.APIKey = true, in.URL, config.Secret(key)
		return c
	}

	r := run(t, shipping("logs-key-0123456789"))
	expect(t, r, "wan", "logs "+intake+" tcp", Pass, "http-connect via")
	expect(t, r, "wan", "logs "+intake+" tls", Pass, "Vendor Test CA")
	expect(t, r, "wan", "logs intake key", Pass, "nothing stored")
	if n := len(in.Records()); n != 0 {
		t.Errorf("doctor's check left %d records at the intake", n)
	}

	r = run(t, shipping("not-the-key"))
	res := expect(t, r, "wan", "logs intake key", Fail, "401", "logs.ship.api_key")
	if strings.Contains(res.Detail+res.Fix, "not-the-key") {
		t.Errorf("doctor shows the key: %+v", res)
	}

	in.Down()
	expect(t, run(t, shipping("logs-key-0123456789")), "wan", "logs "+intake+" tcp", Fail)

	off := testConfig(t, ca, url)
	for _, res := range run(t, off).Results {
		if strings.HasPrefix(res.Check, "logs") {
			t.Errorf("shipping off, doctor checks %q", res.Check)
		}
	}
}
