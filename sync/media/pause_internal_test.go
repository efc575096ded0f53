package media

import (
	"crypto/md5"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// TestPauseWhileBlobStorageIsAwayAsDocumented holds media.md's figures for the pause while Blob
// storage cannot be reached: the n-th wait is drawn between half and all of 1 s·2ⁿ⁻¹, capped at
// media.retry_max, and once Blob storage answers the waits start over from 1 s. A device asking
// for a file not cached meanwhile is told to come back when the pause ends (Retry-After).
func TestPauseWhileBlobStorageIsAwayAsDocumented(t *testing.T) {
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	const retryMax = time.Minute
	f, _, _ := newTestFetcher(t, Options{RetryMax: retryMax, Now: func() time.Time { return now }})
	m, md5hex := picture("M1")
	f.mu.Lock()
	f.enqueueLocked("M1", m, md5hex, classOnDemand)
	f.mu.Unlock()
	away := result{err: &BlobError{Kind: KindUnreachable, Err: errors.New("dial tcp: connection refused")}, kind: KindUnreachable}
	// pause is the wait after one more download found Blob storage away.
	pause := func() time.Duration {
		t.Helper()
		f.mu.Lock()
		task := f.q.take(true)
		f.mu.Unlock()
		if task == nil {
			t.Fatal("the item is not queued again after Blob storage was away")
		}
		f.unreachable(task, away)
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.pausedTo.Sub(now)
	}

	const rounds = 40
	waits := make([][2]time.Duration, 9) // the shortest and longest n-th wait drawn
	for round := range rounds {
		for n := 1; n < len(waits); n++ {
			d := pause()
			if round == 0 || d < waits[n][0] {
				waits[n][0] = d
			}
			waits[n][1] = max(waits[n][1], d)
		}
		f.contact() // Blob storage answers: the next wait is short again
	}
	for n := 1; n < len(waits); n++ {
		want := min(time.Second<<(n-1), retryMax)
		lo, hi := waits[n][0], waits[n][1]
		if lo < want/2 || hi > want || hi-lo < want/4 {
			t.Errorf("wait %d: drawn from %v to %v over %d rounds, want from %v to %v, spread out", n, lo, hi, rounds, want/2, want)
		}
	}

	// Meanwhile a device asking for the file is told when to come back: the one whose request
	// found Blob storage away as well as the ones after it.
	waiting := make(chan error, 1)
	f.mu.Lock()
	f.waiters["M1"] = append(f.waiters["M1"], waiting)
	f.mu.Unlock()
	d := pause()
	var ue *UnavailableError
	if err := <-waiting; !errors.As(err, &ue) || ue.RetryAfter != d {
		t.Errorf("waiting when Blob storage was found away: %v; want unavailable, retry after %v", err, d)
	}
	if _, _, err := f.want("M1", m, md5hex); !errors.As(err, &ue) || ue.RetryAfter != d {
		t.Errorf("asked for while Blob storage is away: %v; want unavailable, retry after %v", err, d)
	}
}

// A device waiting for an item whose version changes waits for the new content: the download
// that has priority under the bandwidth cap is the new version's, and none once it stops waiting.
func TestDeviceWaitFollowsTheItemsVersion(t *testing.T) {
	f, _, _ := newTestFetcher(t, Options{})
	m, md5hex := picture("M1")
	f.mu.Lock()
	f.enqueueLocked("M1", m, md5hex, classImage)
	f.mu.Unlock()
	ch, task, err := f.want("M1", m, md5hex)
	if err != nil {
		t.Fatal(err)
	}
	first := task.md5
	if !f.contentWanted(first) {
		t.Fatal("the content a device waits for is not wanted")
	}
	body := []byte("the picture, retouched")
	sum := md5.Sum(body)
	next := cloudapi.MediaManifest{ID: "M1", Blob: "products/M1-v2.jpg", Size: int64(len(body)), MD5: base64.StdEncoding.EncodeToString(sum[:]), ContentType: "image/jpeg"}
	f.mu.Lock()
	task.next = &next
	f.requeueLocked(task, time.Time{}, "")
	f.mu.Unlock()
	if f.contentWanted(first) || !f.contentWanted(sum) {
		t.Errorf("after the new version: old content wanted %v, new %v; want false, true", f.contentWanted(first), f.contentWanted(sum))
	}
	f.unwant("M1", ch)
	if f.contentWanted(sum) {
		t.Error("the device gave up, and its content is still wanted")
	}
}
