package devices_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/internal/config"
)

// Discovery announces whether pairing is open: with the enrollment secret always, else while a
// pairing code may still wait for its device, across a restart too.
func TestPairingOpen(t *testing.T) {
	e := newEnv(t, func(o *devices.Options) { o.EnrollmentSecret = "" })
	if e.m.PairingOpen() {
		t.Fatal("open with no code and no enrollment secret")
	}
	if _, err := e.m.NewPairingCode(context.Background(), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if !e.m.PairingOpen() {
		t.Fatal("closed while a code is valid")
	}
	again, err := devices.New(context.Background(), devices.Options{DB: e.db, Now: e.clock.Now})
	if err != nil || !again.PairingOpen() {
		t.Fatalf("after a restart: open %v, %v", again.PairingOpen(), err)
	}
	e.clock.Advance(5 * time.Minute)
	if e.m.PairingOpen() {
		t.Fatal("open after the code expired")
	}
	withSecret := newEnv(t)
	if !withSecret.m.PairingOpen() {
		t.Fatal("closed with the enrollment secret set")
	}
}

// The enrollment secret pairs at most devices.EnrollmentsPerAddress devices from one address in
// devices.EnrollmentWindow: each device paired stays and is dialled for push until revoked.
// Beyond, the pairing is throttled (429 on the API) until the window moves on; other addresses
// and this machine's own programs (loopback) are not held back.
func TestEnrollmentsPerAddress(t *testing.T) {
	e := newEnv(t)
	pair := func(addr string) error {
		_, err := e.m.Pair(context.Background(), devices.PairRequest{EnrollmentSecret: enrollment, Kind: "tablet"}, addr)
		return err
	}
	// Requests at once: no more pass than the limit.
	var wg sync.WaitGroup
	var paired atomic.Int32
	for range 6 * devices.EnrollmentsPerAddress {
		wg.Go(func() {
			if pair("192.0.2.10") == nil {
				paired.Add(1)
			}
		})
	}
	wg.Wait()
	if n := int(paired.Load()); n != devices.EnrollmentsPerAddress {
		t.Fatalf("%d pairings at once from one address: %d paired, want %d", 6*devices.EnrollmentsPerAddress, n, devices.EnrollmentsPerAddress)
	}
	var te *devices.ThrottledError
	if err := pair("192.0.2.10"); !errors.As(err, &te) || te.RetryAfter <= 0 {
		t.Fatalf("pairing %d from one address: %v, want throttled", devices.EnrollmentsPerAddress+1, err)
	}
	// A refusal is logged once per address and window, however often the device retries.
	if n := strings.Count(e.logs.String(), "too many devices paired lately"); n != 1 {
		t.Errorf("%d refusals logged, want 1", n)
	}
	if err := pair("192.0.2.11"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	for range devices.EnrollmentsPerAddress + 1 {
		if err := pair("127.0.0.1"); err != nil {
			t.Fatalf("loopback: %v", err)
		}
	}
	e.clock.Advance(devices.EnrollmentWindow)
	if err := pair("192.0.2.10"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// Refusals are no failed attempts: a pairing code from another address is not held back,
	// even after refusals from many addresses.
	for i := range 20 {
		for range devices.EnrollmentsPerAddress {
			var te *devices.ThrottledError
			if err := pair(fmt.Sprintf("192.0.2.%d", 100+i)); err != nil && !errors.As(err, &te) {
				t.Fatal(err)
			}
		}
	}
	code, err := e.m.NewPairingCode(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Pair(context.Background(), devices.PairRequest{Code: code.Code, Kind: "pos"}, "192.0.2.250"); err != nil {
		t.Fatalf("a pairing code after many refused enrollments: %v", err)
	}
}

// Wrong codes sent at once from one address get no more checks against the codes than the
// limit allows (attempts take turns), and attempts that are not wrong guesses (pairings,
// malformed requests) do not count.
func TestWrongCodesAtOnceAreThrottled(t *testing.T) {
	e := newEnv(t)
	limit := config.DefaultDevicesPairingAttempts
	// Good pairings and malformed requests first: none of them counts.
	for range 2 * limit {
		code, err := e.m.NewPairingCode(context.Background(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Pair(context.Background(), devices.PairRequest{Code: code.Code, Kind: "pos"}, "192.0.2.77"); err != nil {
			t.Fatal(err)
		}
		var invalid *devices.InvalidError
		if _, err := e.m.Pair(context.Background(), devices.PairRequest{Kind: "pos"}, "192.0.2.77"); !errors.As(err, &invalid) {
			t.Fatalf("a request without a code: %v", err)
		}
	}
	var wg sync.WaitGroup
	var refused, throttled atomic.Int32
	start := make(chan struct{})
	for range 200 {
		wg.Go(func() {
			<-start
			_, err := e.m.Pair(context.Background(), devices.PairRequest{Code: "1234-5678", Kind: "tablet"}, "192.0.2.77")
			var te *devices.ThrottledError
			switch {
			case errors.As(err, &te):
				throttled.Add(1)
			case errors.Is(err, devices.ErrBadPairing):
				refused.Add(1)
			default:
				t.Errorf("a wrong code: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if refused.Load() != int32(limit) || throttled.Load() != int32(200-limit) {
		t.Errorf("200 wrong codes at once from one address: %d checked and refused, %d throttled; want %d checked", refused.Load(), throttled.Load(), limit)
	}
}

// What needs no turn is answered while another attempt holds it (a slow database write): a
// malformed request, enrollment with no secret configured.
func TestMalformedPairingNeedsNoTurn(t *testing.T) {
	e := newEnv(t)
	release := e.m.HoldPairingTurn()
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var invalid *devices.InvalidError
	if _, err := e.m.Pair(ctx, devices.PairRequest{Kind: "pos"}, "192.0.2.9"); !errors.As(err, &invalid) {
		t.Errorf("no code nor secret, another attempt under way: %v, want the request refused at once", err)
	}
	if _, err := e.m.Pair(ctx, devices.PairRequest{Kind: "toaster", Code: "1234-5678"}, "192.0.2.9"); !errors.As(err, &invalid) {
		t.Errorf("an unknown kind, another attempt under way: %v, want the request refused at once", err)
	}
}

// Every attempt that counts against the budget names its address in the log, as devices.md
// says: an admin finds there the host that holds every device's pairing back.
func TestFailedPairingsNameTheirAddress(t *testing.T) {
	e := newEnv(t)
	for addr, req := range map[string]devices.PairRequest{
		"192.0.2.11": {Code: "x", Kind: "pos"},
		"192.0.2.12": {Code: "123", Kind: "pos"},
		"192.0.2.13": {Code: "1234-5678", Kind: "pos"},
		"192.0.2.14": {EnrollmentSecret: "not-the-secret-0000000", Kind: "pos"},
	} {
		if _, err := e.m.Pair(context.Background(), req, addr); !errors.Is(err, devices.ErrBadPairing) {
			t.Fatalf("%+v from %s: %v", req, addr, err)
		}
		named := false
		for line := range strings.Lines(e.logs.String()) {
			named = named || strings.Contains(line, `msg="devices: pairing refused`) && strings.Contains(line, "addr="+addr+"\n")
		}
		if !named {
			t.Errorf("no line \"devices: pairing refused\" naming %s:\n%s", addr, e.logs.String())
		}
	}
}

// Failed attempts from many addresses reach the limit of all addresses together: an address that
// never failed is held back too, and the refusal says it is for all addresses, not for its own.
func TestSharedPairingLimitSaysSo(t *testing.T) {
	e := newEnv(t)
	limit := config.DefaultDevicesPairingAttempts
	for i := range 10 * limit {
		if _, err := e.m.Pair(context.Background(), devices.PairRequest{Code: "1234-5678", Kind: "pos"}, fmt.Sprintf("192.0.2.%d", 1+i/limit)); !errors.Is(err, devices.ErrBadPairing) {
			t.Fatalf("wrong code %d: %v", i, err)
		}
	}
	var te *devices.ThrottledError
	_, err := e.m.Pair(context.Background(), devices.PairRequest{Code: "1234-5678", Kind: "pos"}, "198.51.100.7")
	if !errors.As(err, &te) || !strings.Contains(te.Why(), "from all addresses together") {
		t.Fatalf("an address that never failed, past the shared limit: %v", err)
	}
	_, err = e.m.Pair(context.Background(), devices.PairRequest{Code: "1234-5678", Kind: "pos"}, "192.0.2.1")
	if !errors.As(err, &te) || te.RetryAfter <= 0 {
		t.Fatalf("an address past its own limit and the shared one: %v", err)
	}
}

// What openapi.yaml says of a pairing request's fields: app_version is printable ASCII, a name
// is 1 to 64 characters (not bytes) and not blank, and a push_port of 0 is the default; in a
// heartbeat, 0 leaves the port as it was.
func TestPairRequestFieldRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var invalid *devices.InvalidError
	for _, req := range []devices.PairRequest{
		{AppVersion: "2.4.1-β"},
		{AppVersion: "2.4\t1"},
		{Name: "   "},
		{Name: "till\x07"},
		{Name: strings.Repeat("é", 65)},
	} {
		req.EnrollmentSecret, req.Kind = enrollment, "pos"
		if _, err := e.m.Pair(ctx, req, "192.0.2.9"); !errors.As(err, &invalid) {
			t.Errorf("%+v: %v, want the request refused as invalid", req, err)
		}
	}
	c, err := e.m.Pair(ctx, devices.PairRequest{EnrollmentSecret: enrollment, Kind: "pos", Name: strings.Repeat("é", 64), AppVersion: "2.4.1-beta (build 7)"}, "192.0.2.9")
	if err != nil || c.Device.PushPort != config.DefaultDevicesPushPortDefault {
		t.Fatalf("a name of 64 accented letters, printable ASCII version, no push_port: %+v, %v; want paired on port %d", c.Device, err, config.DefaultDevicesPushPortDefault)
	}
	d, err := e.m.Heartbeat(ctx, c.DeviceID, devices.Heartbeat{PushPort: 0}, "192.0.2.9")
	if err != nil || d.PushPort != config.DefaultDevicesPushPortDefault {
		t.Fatalf("heartbeat with push_port 0: %+v, %v; want the port unchanged", d, err)
	}
}
