package devicesim

import (
	"net"
	"testing"
	"time"
)

// Two connections' hellos run side by side, and the older one's can end last: the newer stays
// the device's connection, and the older is refused.
func TestOlderConnectionAdoptedLastIsRefused(t *testing.T) {
	d := &Device{}
	older, olderPeer := net.Pipe()
	newer, newerPeer := net.Pipe()
	defer olderPeer.Close()
	defer newerPeer.Close()
	if _, ok := d.adopt(newer, 2); !ok {
		t.Fatal("the newer connection was refused")
	}
	if _, ok := d.adopt(older, 1); ok {
		t.Fatal("the older connection, adopted last, replaced the newer one")
	}
	if d.conn != newer {
		t.Fatal("the device's connection is not the newer one")
	}
	// The newer connection is still open: a write to it reaches its peer.
	go newer.Write([]byte("x"))
	newerPeer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := newerPeer.Read(make([]byte, 1)); err != nil {
		t.Fatalf("the newer connection was closed: %v", err)
	}
}
