package media

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/storage"
)

// A manifest that goes back to the content served while another version of it downloads is not
// left behind: once that version is recorded, the one the catalog names again is fetched.
func TestBackToTheServedVersionDuringADownload(t *testing.T) {
	f, _, _ := newTestFetcher(t, Options{Prefetch: true})
	served, servedHex := picture("M1")
	other := served
	other.MD5 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	otherHex := hex.EncodeToString(bytes.Repeat([]byte{7}, 16))
	f.mu.Lock()
	f.enqueueLocked("M1", other, otherHex, classOnDemand)
	task := f.q.take(true)
	f.mu.Unlock()
	gen := f.readStart()
	f.consider(&storage.MediaItem{ID: "M1", Seq: 3, Manifest: served, CachedMD5: servedHex}, false, gen)
	f.readEnd()
	f.mu.Lock()
	defer f.mu.Unlock()
	if task.next == nil || task.next.MD5 != served.MD5 {
		t.Fatalf("the download of the other version goes on with next %+v, want the served version after it", task.next)
	}
	// And forth again to the version downloading: nothing comes after it.
	f.mu.Unlock()
	gen = f.readStart()
	f.consider(&storage.MediaItem{ID: "M1", Seq: 4, Manifest: other, CachedMD5: servedHex}, false, gen)
	f.readEnd()
	f.mu.Lock()
	if task.next != nil {
		t.Fatalf("back to the version downloading, next is still %+v", task.next)
	}
}

// A fetched file the database could not record is fetched again a minute later; a device asking
// meanwhile is told why, not given a reason that ends in nothing.
func TestUnrecordedFileSaysWhy(t *testing.T) {
	f, _, _ := newTestFetcher(t, Options{Prefetch: true})
	m, md5hex := picture("M1")
	f.mu.Lock()
	f.enqueueLocked("M1", m, md5hex, classOnDemand)
	task := f.q.take(true)
	f.recordedLocked(task, errors.New("disk I/O error"))
	f.mu.Unlock()
	_, _, err := f.want("M1", m, md5hex)
	var unavailable *UnavailableError
	if !errors.As(err, &unavailable) || !strings.HasSuffix(unavailable.Reason, "the database could not record it: disk I/O error") ||
		unavailable.RetryAfter <= 0 {
		t.Fatalf("asked for meanwhile: %v", err)
	}
}

// TestRecordedDuringAReadIsNotFetchedAgain: the catalog's media entries are read outside the
// fetcher's lock. A file a device asked for can be fetched and recorded, and its task
// forgotten, between the read of its entry and consider. The entry then says "not cached" and
// no task says otherwise, yet the file is complete and must not be fetched again. An entry read
// after the record is taken as it is: a file evicted since is fetched again.
func TestRecordedDuringAReadIsNotFetchedAgain(t *testing.T) {
	f, _, _ := newTestFetcher(t, Options{Prefetch: true})
	m, md5hex := picture("M1")
	entry := func() *storage.MediaItem { return &storage.MediaItem{ID: "M1", Seq: 1, Manifest: m} } // not cached
	queued := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.q.tasks["M1"] != nil
	}

	gen := f.readStart()
	// Meanwhile a device's request fetches the file, which is recorded, and the task ends.
	f.mu.Lock()
	f.enqueueLocked("M1", m, md5hex, classOnDemand)
	task := f.q.take(true)
	f.recordedLocked(task, nil)
	f.mu.Unlock()
	if queued() {
		t.Fatal("the task is still queued after its file was recorded")
	}
	f.consider(entry(), false, gen)
	f.readEnd()
	if queued() {
		t.Fatal("a file recorded while its entry was being read was queued to be fetched again")
	}

	gen = f.readStart()
	f.consider(entry(), false, gen)
	f.readEnd()
	if !queued() {
		t.Fatal("an entry read after the record, saying the file is not cached, was not queued")
	}
}

// A download that fails after the catalog named a newer version of its item neither tells those
// waiting the old version's reason nor holds the new one back: the new version is tried now.
func TestFailedDownloadOfAReplacedVersion(t *testing.T) {
	f, _, _ := newTestFetcher(t, Options{Prefetch: true})
	old, oldHex := picture("M1")
	fixed := old
	fixed.MD5 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	f.mu.Lock()
	f.enqueueLocked("M1", old, oldHex, classOnDemand)
	task := f.q.take(true)
	f.mu.Unlock()
	waiting, _, err := f.want("M1", old, oldHex)
	if err != nil {
		t.Fatal(err)
	}
	gen := f.readStart()
	f.consider(&storage.MediaItem{ID: "M1", Seq: 2, Manifest: fixed}, false, gen)
	f.readEnd()
	f.failed(t.Context(), task, result{err: errors.New("blob img/M1.jpg: content does not match"), kind: storage.MediaQuarantined})
	select {
	case err := <-waiting:
		t.Fatalf("the device waiting was told %v, the old version's failure", err)
	default:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if task.md5b64() != fixed.MD5 || !task.notBefore.IsZero() || task.running {
		t.Fatalf("after the failure: version %s, waits until %v, running %v; want the new version ready", task.md5b64(), task.notBefore, task.running)
	}
	if _, ok := f.failures["M1"]; ok {
		t.Errorf("the old version's failure is kept: %+v", f.failures["M1"])
	}
}
