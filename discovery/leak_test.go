package discovery

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Run returns promptly when told to stop and leaves no goroutine behind, for the UDP server and
// the mDNS responder (here with no interface to register on: real registrations are in
// netns_test.go).
func TestRunStopsCleanly(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, err := NewServer(Options{Addr: "127.0.0.1:0", Interfaces: []string{"lo"}, Info: testInfo(), HTTPPort: 80,
		PollInterval: 10 * time.Millisecond, AnnounceInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMDNS(MDNSOptions{Instance: "x", Interfaces: []string{"storeedge-none"}, Info: testInfo(), HTTPPort: 80,
		PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- s.Run(ctx) }()
	go func() { done <- m.Run(ctx) }()
	// The state has no signal of its own: wait for it to leave "starting", the deadline only
	// bounding a failure.
	for deadline := time.Now().Add(5 * time.Second); m.Status().State == MDNSStarting && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if st := m.Status(); st.State != MDNSNoInterface {
		t.Errorf("mDNS state %q with no interface", st.State)
	}
	cancel()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5s of the stop")
		}
	}
}
