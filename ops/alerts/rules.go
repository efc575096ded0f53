package alerts

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/disk"
	"github.com/storeedge/storeedge/storage"
)

// Rule names, as the status, the mails and docs/operations.md call them.
const (
	RuleWANDown        = "wan_down"
	RuleUploadWaiting  = "upload_waiting"
	RuleUploadRefused  = "upload_refused"
	RuleDeadLettered   = "dead_lettered"
	RuleQuarantined    = "quarantined"
	RuleDiskLow        = "disk_low"
	RuleDiskFailed     = "disk_failed"
	RuleMediaQuotaFull = "media_quota_full"
	RuleDevicesOffline = "devices_offline"
	RuleBackupFailed   = "backup_failed"
	RuleBackOfficeFail = "backoffice_failing"
	RuleBackOfficeRef  = "backoffice_refused"
)

// RefusedHold is how long the back-office refusal alert stays open after the last refusal: like
// a dead-letter, a refusal is an event, not a state.
const RefusedHold = time.Hour

// DeadLetterHold is how long the dead-letter alert stays open after the last order was
// dead-lettered: a dead-letter is an event, not a state, so the alert resolves after a quiet
// hour.
const DeadLetterHold = time.Hour

// MediaQuotaHold is how long the media quota alert stays open after the cache last had items
// waiting for room: evictions and new items can make room and take it again from one check to
// the next, and the alert must not open and resolve with each.
const MediaQuotaHold = 10 * time.Minute

// diskResolveMargin: a disk alert resolves only once this much more than the threshold is free
// again (a tenth), so that a disk hovering at the threshold does not flap.
const diskResolveMargin = 10

// listMax bounds the items (devices, collections) a summary or detail names.
const listMax = 20

// condition is what one check of a rule found.
type condition struct {
	active bool
	// since is when the condition began, when the facts tell (the oldest waiting order); zero:
	// since the first check that saw it.
	since   time.Time
	summary string // one line
	detail  string // lines of facts
	// seen, when set, records that the check's facts were acted on (a counter's new value);
	// Check calls it once the state it led to is saved, so that a failed save sees them again.
	seen func()
}

// rule is one alert rule.
type rule struct {
	name  string
	title string        // a few words, for subjects
	after time.Duration // opens once the condition has held this long
	hold  time.Duration // resolves once the condition has not held for this long
	// check looks at the facts; open tells whether the alert is open now.
	check  func(f *Facts, now time.Time, open bool) condition
	advice string // what to do, for the mails
	// resolved, when set, is said in the mail of the alert's resolution: what it does not mean.
	resolved string
}

// ruleSet builds the enabled rules of the configuration, in the order of the configuration.
func ruleSet(c config.Alerts, dl *deadLetters, rf *refusals) []rule {
	var out []rule
	add := func(on bool, r rule) {
		if on {
			out = append(out, r)
		}
	}
	add(c.WANDown.Enabled, wanDown(c.WANDown.After))
	add(c.UploadWaiting.Enabled, uploadWaiting(c.UploadWaiting.After))
	add(c.UploadRefused.Enabled, uploadRefused())
	add(c.DeadLettered.Enabled, deadLettered(dl))
	add(c.Quarantined.Enabled, quarantined())
	add(c.DiskLow.Enabled, diskLow(uint64(c.DiskLow.FreeMB)<<20))
	add(c.DiskFailed.Enabled, diskFailed())
	add(c.MediaQuotaFull.Enabled, mediaQuotaFull())
	add(c.DevicesOffline.Enabled, devicesOffline(c.DevicesOffline.After))
	add(c.BackupFailed.Enabled, backupFailed())
	add(c.BackOfficeFailing.Enabled, backOfficeFailing(c.BackOfficeFailing.After))
	add(c.BackOfficeRefused.Enabled, backOfficeRefused(rf))
	return out
}

func wanDown(after time.Duration) rule {
	return rule{
		name: RuleWANDown, title: "WAN down", after: after,
		advice: "Check the shop's internet link and, if the shop has one, the proxy (wan.proxy); " +
			"\"storeedge doctor\" checks every step of the way to the cloud and says which one fails. " +
			"If the state is unauthorized, the cloud refuses the store key (cloud.store_key): ask the vendor. " +
			"Meanwhile the shop works from its local data and orders wait safely to be uploaded.",
		check: func(f *Facts, now time.Time, open bool) condition {
			w := f.WAN
			if w == nil || w.Up || (w.Unknown && !open) {
				return condition{}
			}
			if w.Unknown {
				// A restart during an outage: nothing says the link is back yet.
				return condition{active: true, summary: "the cloud cannot be reached (no sync attempt has finished since the start)",
					detail: fmt.Sprintf("Route: %s\n", w.Route)}
			}
			var d strings.Builder
			fmt.Fprintf(&d, "State: %s\n", w.State)
			if w.LastError != "" {
				fmt.Fprintf(&d, "Last error: %s\n", clipError(w.LastError))
			}
			fmt.Fprintf(&d, "Route: %s\n", w.Route)
			if !w.LastContact.IsZero() {
				fmt.Fprintf(&d, "Last answer from the cloud: %s\n", when(w.LastContact))
			}
			return condition{active: true, summary: "the cloud cannot be reached (" + w.State + ")", detail: d.String()}
		},
	}
}

func uploadWaiting(after time.Duration) rule {
	return rule{
		name: RuleUploadWaiting, title: "orders waiting to upload", after: after,
		advice: "Usually the WAN is down (see the wan_down alert). If it is up, GET /api/v1/status shows why uploads fail " +
			"under upload.last_error; orders the cloud refused for good are listed by GET /api/v1/admin/outbox/rejected. " +
			"Nothing is lost: the orders are uploaded, in order, as soon as the cloud takes them.",
		// Active only while an order has waited too long, so that the alert resolves once the
		// backlog is down to orders that are merely recent.
		check: func(f *Facts, now time.Time, open bool) condition {
			if f.OldestUpload.IsZero() || now.Sub(f.OldestUpload) < after {
				return condition{}
			}
			return condition{
				active:  true,
				since:   f.OldestUpload,
				summary: fmt.Sprintf("%d order(s) waiting to upload to the cloud, the oldest since %s", f.UploadsWaiting, when(f.OldestUpload)),
				detail:  fmt.Sprintf("Oldest waiting since: %s\nWaiting: %d\n", when(f.OldestUpload), f.UploadsWaiting),
			}
		},
	}
}

func uploadRefused() rule {
	return rule{
		name: RuleUploadRefused, title: "orders refused by the cloud",
		advice: "GET /api/v1/admin/outbox/rejected lists what the cloud refused for good, with its reason; the later events " +
			"of an order whose event was refused are held back with it. These orders are not in the cloud. Once the cause " +
			"is fixed (often by the vendor: send them the reasons), POST /api/v1/admin/outbox/retry sends them all again, " +
			"in order. The alert resolves when none is left.",
		check: func(f *Facts, now time.Time, open bool) condition {
			if f.UploadsRefused == 0 {
				return condition{}
			}
			return condition{
				active:  true,
				summary: fmt.Sprintf("%d order event(s) refused by the cloud wait for a retry", f.UploadsRefused),
				detail:  fmt.Sprintf("Refused or held back with a refused one: %d\n", f.UploadsRefused),
			}
		},
	}
}

// deadLetters remembers the Service Bus dead-letter count of the previous check. The count
// starts at 0 with the server, so a dead-letter before the first check is seen too.
type deadLetters struct{ last int64 }

func deadLettered(dl *deadLetters) rule {
	return rule{
		name: RuleDeadLettered, title: "order dead-lettered", hold: DeadLetterHold,
		advice: "The shop refused an order from Service Bus: it broke the contract (docs/cloud-api.md) or clashed with an order " +
			"already stored. The log has each one with its reason (\"dead-lettered\"); the message itself is in the queue's " +
			"dead-letter queue (Azure portal, Service Bus Explorer). The sender must correct it and send it again. " +
			"The alert resolves after an hour without another.",
		check: func(f *Facts, now time.Time, open bool) condition {
			sb := f.ServiceBus
			if sb == nil {
				return condition{}
			}
			last := dl.last
			if sb.DeadLettered < last {
				last = 0 // a new receiver counts from 0
			}
			seen := func() { dl.last = sb.DeadLettered }
			if sb.DeadLettered <= last {
				return condition{seen: seen}
			}
			return condition{
				active: true, seen: seen,
				summary: fmt.Sprintf("orders from Service Bus were dead-lettered (%d since the server started)", sb.DeadLettered),
				detail:  fmt.Sprintf("Queue: %s\nDead-lettered since the server started: %d\n", sb.Queue, sb.DeadLettered),
			}
		},
	}
}

func quarantined() rule {
	return rule{
		name: RuleQuarantined, title: "catalog documents quarantined",
		advice: "The cloud sent catalog documents this server cannot read; they are set aside and the rest of the catalog " +
			"is up to date. GET /api/v1/status lists them under quarantine, with the reason. They leave the quarantine when " +
			"the cloud sends a corrected version: tell the vendor's support, with the reasons.",
		check: func(f *Facts, now time.Time, open bool) condition {
			var total int64
			var parts []string
			for _, c := range sortedKeys(f.Quarantined) {
				if n := f.Quarantined[c]; n > 0 {
					total += n
					parts = append(parts, fmt.Sprintf("%s: %d", c, n))
				}
			}
			if total == 0 {
				return condition{}
			}
			return condition{
				active:  true,
				summary: fmt.Sprintf("%d catalog document(s) quarantined (%s)", total, strings.Join(parts, ", ")),
				detail:  "Quarantined per collection: " + strings.Join(parts, ", ") + "\n",
			}
		},
	}
}

func diskLow(min uint64) rule {
	return rule{
		name: RuleDiskLow, title: "disk almost full",
		advice: "Free space on that disk (other programs' files, old logs) or move data_dir to a larger disk. " +
			"Below 512 MiB the database soon stops taking changes; a backup or an upgrade needs room for a copy of the database.",
		check: func(f *Facts, now time.Time, open bool) condition {
			d := f.Disk
			if d == nil {
				if open {
					// Not measured is not free: the alert stays open until a measure says so.
					return condition{active: true, summary: "the free space of data_dir's disk cannot be measured now; it was low when last measured"}
				}
				return condition{}
			}
			limit := min
			if open {
				limit += min / diskResolveMargin
			}
			if d.Free >= limit {
				return condition{}
			}
			return condition{
				active:  true,
				summary: fmt.Sprintf("%s free on the disk of %s (the alert is set at %s)", disk.Format(d.Free), d.Path, disk.Format(min)),
				detail:  fmt.Sprintf("Folder: %s\nFree: %s\nThreshold: %s (alerts.disk_low.free_mb)\n", d.Path, disk.Format(d.Free), disk.Format(min)),
			}
		},
	}
}

func diskFailed() rule {
	return rule{
		name: RuleDiskFailed, title: "disk failed a write",
		advice: "The disk of data_dir failed to write the database's log, so storeedge can no longer say what is on it: " +
			"it stores no LAN order (devices get errors) and receives no Service Bus order (they wait in the queue), " +
			"and /readyz says not ready, until it restarts. " +
			"The orders answered just before may be lost. Check the disk (the system's log names the error), repair or " +
			"replace it (restore the last backup onto a good disk if need be), then restart the machine, not only the " +
			"service: a restart of the service alone would read back writes the disk never took. A restart of storeedge " +
			"resolves this alert whatever the disk's state.",
		resolved: "storeedge restarted, and a new process does not know what the last one met: this says nothing of the disk. " +
			"Unless the disk was repaired and the machine restarted, check it now.",
		check: func(f *Facts, now time.Time, open bool) condition {
			if f.DiskFailed == "" {
				return condition{}
			}
			return condition{active: true,
				summary: "the disk of data_dir failed to write the database: no LAN order is taken until a restart",
				detail:  "Error: " + clipError(f.DiskFailed) + "\n"}
		},
	}
}

func mediaQuotaFull() rule {
	return rule{
		name: RuleMediaQuotaFull, title: "media cache full", hold: MediaQuotaHold,
		advice: "The media cache has reached its quota, so new images and videos are not downloaded and devices may miss " +
			"them. If the disk has room, raise the media cache's quota in the configuration; otherwise free space or move " +
			"data_dir to a larger disk.",
		check: func(f *Facts, now time.Time, open bool) condition {
			if !f.MediaQuotaFull {
				return condition{}
			}
			return condition{active: true, summary: "the media cache is at its quota: new media are not downloaded"}
		},
	}
}

func devicesOffline(after time.Duration) rule {
	return rule{
		name: RuleDevicesOffline, title: "devices offline",
		advice: "Check that these devices are switched on and on the shop network (GET /api/v1/admin/devices shows each one's last " +
			"contact and address). A device gone for good should be revoked: it then no longer counts.",
		check: func(f *Facts, now time.Time, open bool) condition {
			var off []Device
			for _, d := range f.Devices {
				if !d.Connected && !d.LastSeen.IsZero() && now.Sub(d.LastSeen) >= after {
					off = append(off, d)
				}
			}
			if len(off) == 0 {
				return condition{}
			}
			sort.Slice(off, func(i, j int) bool { return off[i].LastSeen.Before(off[j].LastSeen) })
			var names []string
			var d strings.Builder
			for i, dev := range off {
				if i == listMax {
					fmt.Fprintf(&d, "… and %d more\n", len(off)-listMax)
					break
				}
				names = append(names, dev.Name)
				fmt.Fprintf(&d, "%s (%s): last seen %s\n", dev.Name, dev.ID, when(dev.LastSeen))
			}
			return condition{
				active:  true,
				summary: fmt.Sprintf("%d device(s) silent for more than %s: %s", len(off), durText(after), strings.Join(names, ", ")),
				detail:  d.String(),
			}
		},
	}
}

// backupHangs is how long a scheduled backup may write before backup_failed says it hangs (or
// three times the last one's length, when longer): a backup of a large shop to a slow share takes
// minutes, not an hour.
const backupHangs = time.Hour

// backupHangsAt is when the scheduled backup being written counts as hung; zero when none is.
func backupHangsAt(b *Backup) time.Time {
	if b == nil || b.RunningSince.IsZero() {
		return time.Time{}
	}
	return b.RunningSince.Add(max(backupHangs, 3*b.LastTook))
}

func backupFailed() rule {
	return rule{
		name: RuleBackupFailed, title: "backup failed",
		advice: "The log has each failure at level ERROR (\"backup: scheduled backup failed\"). Check that backup.dir is " +
			"reachable (a network share mounted, its credentials valid) and has room, and that the service account may " +
			"write to it (on Linux, the unit must open it: ReadWritePaths=); \"storeedge doctor\" checks each of these, and " +
			"\"storeedge backup FILE\" takes one at once and says what fails. The next scheduled backup " +
			"resolves the alert when it succeeds. A backup that hangs logs nothing and holds the schedule: once the " +
			"share answers again, or to give up on it, restart the service.",
		check: func(f *Facts, now time.Time, open bool) condition {
			b := f.Backup
			if hangsAt := backupHangsAt(b); !hangsAt.IsZero() && !now.Before(hangsAt) {
				return condition{active: true, since: hangsAt,
					summary: fmt.Sprintf("the scheduled backup to %s has been writing for %s without end: the folder hangs (a network share that stopped answering?), and the database's write-ahead log grows meanwhile",
						b.Dir, durText(now.Sub(b.RunningSince))),
					detail: fmt.Sprintf("Folder: %s\nWriting since: %s\n", b.Dir, when(b.RunningSince))}
			}
			if b != nil && b.Unknown && open {
				return condition{active: true, summary: "no scheduled backup has run since the server started; the last one before failed"}
			}
			if b == nil || b.Unknown || b.Failures == 0 {
				return condition{}
			}
			var d strings.Builder
			fmt.Fprintf(&d, "Folder: %s\nFailed in a row: %d, since %s\nLast error: %s\n", b.Dir, b.Failures, when(b.FailingSince), clipError(b.LastError))
			if b.LastSuccess.IsZero() {
				d.WriteString("Last good backup: none in the folder\n")
			} else {
				fmt.Fprintf(&d, "Last good backup: %s (%s)\n", b.LastFile, when(b.LastSuccess))
			}
			return condition{active: true, since: b.FailingSince,
				summary: fmt.Sprintf("the scheduled backup to %s failed (%d time(s) in a row): %s", b.Dir, b.Failures, clipError(b.LastError)),
				detail:  d.String()}
		},
	}
}

func backOfficeFailing(after time.Duration) rule {
	return rule{
		name: RuleBackOfficeFail, title: "back office failing", after: after,
		advice: "Orders wait safely and go to the ERP once the exchange works again. GET /api/v1/status shows the exchange " +
			"under backoffice (last_error, and per target what is pending); the log has each failed run. Check the export " +
			"folder (backoffice.export.dir: reachable, writable), the webhook (backoffice.webhook.url: the ERP up, the " +
			"secret it expects) and the stock import folder.",
		check: func(f *Facts, now time.Time, open bool) condition {
			b := f.BackOffice
			if b != nil && b.Unknown && open {
				return condition{active: true, summary: "no back-office run has ended since the server started; the runs before failed"}
			}
			if b == nil || b.Unknown || b.LastError == "" {
				return condition{}
			}
			last := "none since the start"
			if !b.LastSuccess.IsZero() {
				last = when(b.LastSuccess)
			}
			return condition{active: true,
				summary: "the exchange with the back office fails: " + clipError(b.LastError),
				detail:  fmt.Sprintf("Last error: %s\nLast successful run: %s\n", clipError(b.LastError), last)}
		},
	}
}

// refusals remembers the back office's refusal count (since the start) of the previous check.
type refusals struct {
	last int64
}

func backOfficeRefused(rf *refusals) rule {
	return rule{
		name: RuleBackOfficeRef, title: "refused by the back office", hold: RefusedHold,
		advice: "GET /api/v1/admin/backoffice/webhook/failures lists the orders the ERP's webhook refused for good, with its " +
			"answer; once the ERP is corrected, POST /api/v1/admin/backoffice/webhook/{order}/retry sends one again. " +
			"A refused stock file is in the import folder's failed/ with a file beside it naming the line and the reason: " +
			"correct it and put it back in the import folder. The alert resolves after an hour without another refusal.",
		check: func(f *Facts, now time.Time, open bool) condition {
			b := f.BackOffice
			if b == nil {
				return condition{}
			}
			seen := func() { rf.last = b.Refused }
			if b.Refused <= rf.last {
				return condition{seen: seen}
			}
			return condition{active: true, seen: seen,
				summary: fmt.Sprintf("the back office refused orders or stock files (%d since the server started)", b.Refused),
				detail:  fmt.Sprintf("Refused since the server started (orders refused by the webhook, stock files in failed/): %d\n", b.Refused)}
		},
	}
}

// next is a rule's new state after a check that found c, and the event it makes ("" for none,
// storage.AlertOpened or storage.AlertResolved). A nil state is a rule at rest.
func next(r rule, st *storage.AlertState, c condition, now time.Time) (*storage.AlertState, string) {
	if !c.active {
		if st == nil || !st.Open() {
			return nil, "" // at rest, or pending and over before it opened
		}
		if now.Sub(st.LastActive) >= r.hold {
			return nil, storage.AlertResolved
		}
		return st, ""
	}
	n := storage.AlertState{Rule: r.name, PendingSince: now}
	if st != nil {
		n = *st
	}
	if !c.since.IsZero() && !n.Open() {
		n.PendingSince = c.since
	}
	n.LastActive, n.Summary, n.Detail = now, c.summary, c.detail
	if !n.Open() && now.Sub(n.PendingSince) >= r.after {
		n.OpenedAt = now
		return &n, storage.AlertOpened
	}
	return &n, ""
}

// changed tells whether a state must be written: LastActive alone matters only to a rule that
// holds its alert open after the condition.
func changed(r rule, old, n *storage.AlertState) bool {
	if old == nil || n == nil {
		return old != n
	}
	return old.Summary != n.Summary || old.Detail != n.Detail || !old.PendingSince.Equal(n.PendingSince) ||
		!old.OpenedAt.Equal(n.OpenedAt) || (r.hold > 0 && !old.LastActive.Equal(n.LastActive))
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// saw records that the condition's facts were acted on.
func (c condition) saw() {
	if c.seen != nil {
		c.seen()
	}
}
