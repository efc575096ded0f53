package devices_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// applyProduct applies a page of one product that catches its collection up, as a sync does.
func applyProduct(t *testing.T, db *storage.DB, id string, rev int64) {
	t.Helper()
	doc, _ := json.Marshal(cloudapi.Product{ID: id, Name: "Tea " + id})
	_, err := db.ApplyPage(context.Background(), storage.Page{Collection: cloudapi.Products,
		Changes: []cloudapi.Change{{Collection: cloudapi.Products, ID: id, Op: cloudapi.OpUpsert, Rev: rev, Doc: doc}},
		End:     cloudapi.PageEnd{Cursor: fmt.Sprint("c", rev), Count: 1}})
	if err != nil {
		t.Fatal(err)
	}
}

// A device that keeps a copy of the catalog (declared when it pairs or in a heartbeat) is told
// when the catalog changed, with the feed's epoch and latest change number; a device without the
// capability is not; a device away gets one notice, valid a minute, however often the catalog
// changes meanwhile.
func TestCatalogChangesAreNoticed(t *testing.T) {
	e := newEnv(t, func(o *devices.Options) { o.CatalogNoticeEvery = 20 * time.Millisecond })
	shelf := e.device(t, devicesim.Options{}, devices.CapCatalog)
	kitchen := e.device(t, devicesim.Options{}, devices.CapOrders)

	applyProduct(t, e.db, "P1", 1)
	got := shelf.waitCommands(t, 1)
	var n struct {
		Epoch  string `json:"epoch"`
		Latest int64  `json:"latest"`
	}
	if got[0].Type != devices.CmdCatalogChanged || json.Unmarshal(got[0].Payload, &n) != nil || n.Epoch != e.db.Epoch() || n.Latest != e.db.Seq() || n.Latest == 0 {
		t.Fatalf("notice %+v (%+v), want catalog.changed with epoch %s and latest %d", got[0], n, e.db.Epoch(), e.db.Seq())
	}
	applyProduct(t, e.db, "P2", 1)
	if got := shelf.waitCommands(t, 2); got[1].Type != devices.CmdCatalogChanged || !json.Valid(got[1].Payload) {
		t.Fatalf("second notice %+v", got[1])
	}
	if cmds := kitchen.Commands(); len(cmds) != 0 {
		t.Fatalf("a device without the catalog capability got %+v", cmds)
	}

	// The kitchen declares the capability in a heartbeat: it gets the notices from then on. While
	// it gets a notice for each change (each round's signal), the device away has one waiting,
	// valid a minute, not one per change.
	if _, err := e.m.Heartbeat(context.Background(), kitchen.creds.DeviceID, devices.Heartbeat{Capabilities: []string{devices.CapOrders, devices.CapCatalog}}, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	shelf.stop()
	for rev := int64(2); rev <= 4; rev++ {
		before := len(kitchen.Commands())
		applyProduct(t, e.db, "P1", rev)
		kitchen.waitCommands(t, before+1)
		waiting, err := e.db.ListCommands(context.Background(), storage.CommandFilter{DeviceID: shelf.creds.DeviceID, State: storage.CommandQueued, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(waiting) != 1 || waiting[0].Type != devices.CmdCatalogChanged || waiting[0].ExpiresAt.Sub(waiting[0].CreatedAt) != time.Minute {
			t.Fatalf("change %d: %d commands wait for the device away, want one notice: %+v", rev, len(waiting), waiting)
		}
	}
}

// At the default pace (catalog.md: at most once every 5 s) a catalog that changes twice right
// after a notice gets its next notice no sooner than 5 s after the first round, and that one
// notice covers both changes: its latest is the second change's number.
func TestCatalogNoticesAtMostEveryFiveSeconds(t *testing.T) {
	e := newEnv(t)
	shelf := e.device(t, devicesim.Options{}, devices.CapCatalog)
	start := time.Now()
	applyProduct(t, e.db, "P1", 1)
	shelf.waitCommands(t, 1)
	applyProduct(t, e.db, "P2", 1)
	applyProduct(t, e.db, "P3", 1)
	second := shelf.waitCommands(t, 2)[1]
	if waited := time.Since(start); waited < 5*time.Second {
		t.Fatalf("second notice %s after the first change, want at least 5s between rounds", waited)
	}
	var n struct {
		Latest int64 `json:"latest"`
	}
	if err := json.Unmarshal(second.Payload, &n); err != nil || n.Latest != e.db.Seq() {
		t.Fatalf("second notice %s, want latest %d (both changes in one notice): %v", second.Payload, e.db.Seq(), err)
	}
	if got := len(shelf.Commands()); got != 2 {
		t.Fatalf("%d notices for three changes, want 2", got)
	}
}

// Finished catalog notices are pruned after an hour, other commands after seven days
// (devices.md): a shop whose catalog changes at every poll makes a notice per catalog device
// every 30 s.
func TestFinishedNoticesArePrunedFirst(t *testing.T) {
	e := newEnv(t, func(o *devices.Options) { o.CatalogNoticeEvery = 20 * time.Millisecond })
	shelf := e.device(t, devicesim.Options{}, devices.CapCatalog)
	applyProduct(t, e.db, "P1", 1)
	notice := shelf.waitCommands(t, 1)[0]
	ping := send(t, e, devices.Target{DeviceID: shelf.creds.DeviceID}, "ping", `{}`, 0)[0]
	shelf.waitCommands(t, 2)
	e.waitState(t, notice.ID, storage.CommandAcknowledged)
	e.waitState(t, ping.ID, storage.CommandAcknowledged)
	left := func() map[string]bool {
		cmds, err := e.db.ListCommands(context.Background(), storage.CommandFilter{DeviceID: shelf.creds.DeviceID, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, c := range cmds {
			ids[c.ID] = true
		}
		return ids
	}
	e.clock.Advance(59 * time.Minute)
	if e.m.Prune(context.Background()); !left()[notice.ID] || !left()[ping.ID] {
		t.Fatalf("after 59 minutes: %v, want both commands", left())
	}
	e.clock.Advance(2 * time.Minute)
	if e.m.Prune(context.Background()); left()[notice.ID] || !left()[ping.ID] {
		t.Fatalf("after 61 minutes: %v, want the ping only", left())
	}
	e.clock.Advance(7*24*time.Hour - time.Hour)
	if e.m.Prune(context.Background()); len(left()) != 0 {
		t.Fatalf("after seven days: %v, want nothing", left())
	}
}
