package devices_test

import (
	"context"
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
