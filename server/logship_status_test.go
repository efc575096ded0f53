package server

import (
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/ops/logship"
)

// The status shows log shipping as the shipper reports it, and null when shipping is off.
func TestStatusShowsLogShipping(t *testing.T) {
	off := newFixture(t)
	if body := off.get(t, "/api/v1/status").Body.String(); !strings.Contains(body, `"logs_shipping":null`) {
		t.Errorf("shipping off: %s", body)
	}
	at := testNow.Add(-time.Minute)
	want := logship.Status{State: logship.StateOK, Intake: "api.logmatic.io:443", Route: "http-connect via proxy.lan:3128",
		Shipped: 1200, Buffered: 3, BufferBytes: 900, Dropped: 7, Rejected: 1, LastSuccess: &at}
	on := newFixture(t, func(o *Options) { o.LogShipping = func() logship.Status { return want } })
	st := decodeOK[statusJSON](t, on.get(t, "/api/v1/status"))
	if st.LogShip == nil || st.LogShip.Shipped != 1200 || st.LogShip.Dropped != 7 || st.LogShip.State != logship.StateOK ||
		!st.LogShip.LastSuccess.Equal(at) || st.LogShip.Route != want.Route {
		t.Errorf("logs_shipping %+v, want %+v", st.LogShip, want)
	}
}

// backupStatusSample is scheduled backups failing since a good one: every field of the status.
var backupStatusSample = backup.Status{Dir: "/mnt/nas/storeedge", Schedule: "0 3 * * *", Keep: 7,
	LastSuccess: testNow.Add(-48 * time.Hour), LastFile: "storeedge-box-1-20261203T030000Z.backup",
	LastError: "backup: mkdir /mnt/nas: permission denied", Failures: 2, FailingSince: testNow.Add(-24 * time.Hour),
	NextRun: testNow.Add(time.Hour)}

// The status shows the scheduled backups as the scheduler reports them, and null without them.
func TestStatusShowsBackups(t *testing.T) {
	off := newFixture(t)
	if body := off.get(t, "/api/v1/status").Body.String(); !strings.Contains(body, `"backup":null`) {
		t.Errorf("backups off: %s", body)
	}
	on := newFixture(t, func(o *Options) { o.Backups = func() backup.Status { return backupStatusSample } })
	st := decodeOK[statusJSON](t, on.get(t, "/api/v1/status"))
	if b := st.Backup; b == nil || b.Failures != 2 || b.LastError != backupStatusSample.LastError || !b.FailingSince.Equal(backupStatusSample.FailingSince) ||
		b.LastFile != backupStatusSample.LastFile || !b.NextRun.Equal(backupStatusSample.NextRun) {
		t.Errorf("backup %+v, want %+v", b, backupStatusSample)
	}
}
