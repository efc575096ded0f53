package alerts

import "time"

// Facts are what the rules look at, gathered by the daemon from the components at each check.
// A zero field means "nothing wrong there" or "not running", so a component the daemon does
// not run raises nothing.
type Facts struct {
	// WAN is the link to the cloud as the feed syncer last saw it; nil when sync is off.
	WAN *WAN
	// OldestUpload is when the oldest order still waiting to upload to the cloud was queued;
	// zero when none waits (or sync is off). UploadsWaiting counts them.
	OldestUpload   time.Time
	UploadsWaiting int64
	// UploadsRefused counts the events the cloud refused for good (and the later events of
	// their orders held back with them), waiting for an admin's retry.
	UploadsRefused int64
	// ServiceBus is the receiver of the shop's order queue; nil when Service Bus is off.
	ServiceBus *ServiceBus
	// Quarantined is the number of quarantined feed documents, per collection.
	Quarantined map[string]int64
	// Disk is data_dir's disk; nil when its free space could not be measured.
	Disk *Disk
	// DiskFailed is why the disk failed a flush of the database (storage.DB.FlushFailed); ""
	// while it has not.
	DiskFailed string
	// MediaQuotaFull reports that the media cache has reached its quota, so new media are not
	// fetched.
	MediaQuotaFull bool
	// Devices are the paired devices that are not revoked.
	Devices []Device
	// Backup is the scheduled backups; nil when backup.dir is empty.
	Backup *Backup
	// BackOffice is the exchange with the ERP; nil when the daemon has none.
	BackOffice *BackOffice
}

// Backup is the state of the scheduled backups.
type Backup struct {
	Dir string
	// Unknown is true while no scheduled backup has run since the start: the failures before it
	// are not known, so an open alert stays open and none opens.
	Unknown bool
	// Failures counts the scheduled backups that failed in a row, the first at FailingSince;
	// LastError is the last one's reason.
	Failures     int
	FailingSince time.Time
	LastError    string
	// LastSuccess and LastFile are the newest good backup; zero when none.
	LastSuccess time.Time
	LastFile    string
	// RunningSince is when the scheduled backup being written started; zero when none is.
	// LastTook is how long the last good one took; zero when unknown.
	RunningSince time.Time
	LastTook     time.Duration
}

// BackOffice is the state of the exchange with the ERP.
type BackOffice struct {
	// Unknown is true while no run has ended since the start: an open alert stays open, none
	// opens.
	Unknown bool
	// LastError is why the last run failed; empty when it succeeded (or none ran yet).
	LastError   string
	LastSuccess time.Time // zero: none since the start
	// Refused counts what was refused for good since the server started: orders the ERP's
	// webhook refused and stock files moved to failed/. It only grows.
	Refused int64
}

// WAN is the link to the cloud.
type WAN struct {
	// Up is true when the last attempt reached the cloud and was answered well.
	Up bool
	// Unknown is true while no attempt has finished since the start: an open alert stays open,
	// none opens.
	Unknown     bool
	State       string // the syncer's state, e.g. "unreachable", "proxy_error", "unauthorized"
	LastError   string
	Route       string // "direct" or e.g. "http-connect via proxy.lan:3128"
	LastContact time.Time
}

// ServiceBus is the receiver of the shop's order queue.
type ServiceBus struct {
	Queue string
	// DeadLettered counts the messages dead-lettered since the server started.
	DeadLettered int64
}

// Disk is the disk of data_dir.
type Disk struct {
	Path string // data_dir
	Free uint64 // bytes available to the server
}

// Device is a paired device.
type Device struct {
	ID, Name string
	// LastSeen is the device's last request or heartbeat; zero when never.
	LastSeen time.Time
	// Connected reports a push connection open now, which counts as seen.
	Connected bool
}

// redact cleans the error texts with r, on copies: the structures may be the daemon's.
func (f *Facts) redact(r func(string) string) {
	if f.WAN != nil {
		w := *f.WAN
		w.LastError = r(w.LastError)
		f.WAN = &w
	}
	if f.Backup != nil {
		b := *f.Backup
		b.LastError = r(b.LastError)
		f.Backup = &b
	}
	if f.BackOffice != nil {
		b := *f.BackOffice
		b.LastError = r(b.LastError)
		f.BackOffice = &b
	}
	f.DiskFailed = r(f.DiskFailed)
}
