package devices_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices"
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
	for i := range devices.EnrollmentsPerAddress {
		if err := pair("192.0.2.10"); err != nil {
			t.Fatalf("pairing %d: %v", i+1, err)
		}
	}
	var te *devices.ThrottledError
	if err := pair("192.0.2.10"); !errors.As(err, &te) || te.RetryAfter <= 0 {
		t.Fatalf("pairing %d from one address: %v, want throttled", devices.EnrollmentsPerAddress+1, err)
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
}
