package storage

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Files recorded together in one transaction give back exactly the files no item is served from
// any more: a file one item leaves and another item of the same group moves to stays.
func TestStoreMediaFilesTogether(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	const x, y, z, w = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccccccccccc", "dddddddddddddddddddddddddddddddd"
	at := time.Unix(1e9, 0)
	if _, err := db.StoreMediaFiles(ctx, []MediaRecord{
		{ID: "A", MD5: x, ContentType: "image/jpeg", Size: 10},
		{ID: "C", MD5: z, ContentType: "image/png", Size: 30},
	}, at); err != nil {
		t.Fatal(err)
	}
	// A moves from x to y, B comes to x, C moves from z to w: only z is left unused.
	unused, err := db.StoreMediaFiles(ctx, []MediaRecord{
		{ID: "A", MD5: y, ContentType: "image/jpeg", Size: 20},
		{ID: "B", MD5: x, ContentType: "image/jpeg", Size: 10},
		{ID: "C", MD5: w, ContentType: "image/png", Size: 40},
	}, at)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unused, []string{z}) {
		t.Errorf("unused %v, want [%s]", unused, z)
	}
	for id, want := range map[string]string{"A": y, "B": x, "C": w} {
		if f, err := db.MediaFileExact(ctx, id); err != nil || f.MD5 != want {
			t.Errorf("%s served from %+v (%v), want %s", id, f, err, want)
		}
	}
	if files, bytes, err := db.MediaUsageExact(ctx); err != nil || files != 3 || bytes != 70 {
		t.Errorf("usage %d files %d bytes (%v), want 3 files, 70 bytes", files, bytes, err)
	}
}

// An item's stored time, its Last-Modified, only moves forward at a new version, past the old
// version's second, even when the new content is a file stored long before (another item's) or
// the change comes within the same second: a device asking If-Modified-Since with the old
// version's time must get the new one, not 304.
func TestMediaItemTimeMovesForwardAtANewVersion(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	const c1, c2 = "11111111111111111111111111111111", "22222222222222222222222222222222"
	store := func(id, md5 string, at time.Time) time.Time {
		t.Helper()
		if _, err := db.StoreMediaFiles(ctx, []MediaRecord{{ID: id, MD5: md5, ContentType: "image/jpeg", Size: 10}}, at); err != nil {
			t.Fatal(err)
		}
		f, err := db.MediaFileExact(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return f.StoredAt
	}
	t0 := time.UnixMilli(1_000_000_000_100)
	store("A", c1, t0)
	b1 := store("B", c2, t0.Add(5*time.Second))
	// B moves to the content A has had since t0.
	b2 := store("B", c1, t0.Add(6*time.Second))
	if want := t0.Add(6 * time.Second); !b2.Equal(want) {
		t.Errorf("B moved to an older file: stored at %v, want %v (was %v)", b2, want, b1)
	}
	// Back to c2 within the same second: the next second.
	b3 := store("B", c2, t0.Add(6*time.Second+300*time.Millisecond))
	if want := b2.Truncate(time.Second).Add(time.Second); !b3.Equal(want) {
		t.Errorf("a change within the second: stored at %v, want %v", b3, want)
	}
	// The same version again (a restart adopting it) keeps its time.
	if b4 := store("B", c2, t0.Add(time.Hour)); !b4.Equal(b3) {
		t.Errorf("the same version recorded again: stored at %v, want %v", b4, b3)
	}
	if a := store("A", c1, t0.Add(time.Hour)); !a.Equal(t0) {
		t.Errorf("A unchanged: stored at %v, want %v", a, t0)
	}
}

// A file is recorded with the type its item's manifest gives when the record is made, when the
// manifest is still of that content: a content_type corrected while the file downloaded is not
// lost. RetypeMedia follows the manifest in the same way; neither gives a new version's type to
// the content of the old one.
func TestMediaTypeFollowsTheManifestOfItsContent(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	const x, y = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	b64 := func(md5hex string) string {
		b, _ := hex.DecodeString(md5hex)
		return base64.StdEncoding.EncodeToString(b)
	}
	manifest := func(id, md5hex, ctype string, rev int64) cloudapi.Change {
		doc, _ := json.Marshal(cloudapi.MediaManifest{ID: id, Blob: id + ".bin", Size: 10, MD5: b64(md5hex), ContentType: ctype})
		return cloudapi.Change{Collection: cloudapi.Media, ID: id, Op: cloudapi.OpUpsert, Rev: rev, Doc: doc}
	}
	// A key in another case, as the feed's decoder reads it (encoding/json ignores the case).
	miscased := cloudapi.Change{Collection: cloudapi.Media, ID: "C", Op: cloudapi.OpUpsert, Rev: 2,
		Doc: json.RawMessage(`{"id":"C","blob":"C.bin","size":10,"MD5":"` + b64(x) + `","Content_Type":"image/gif"}`)}
	served := func(id string) string {
		t.Helper()
		f, err := db.MediaFileExact(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return f.ContentType
	}
	// The download of A began under image/jpeg; the manifest now says image/webp. B's manifest
	// moved on to other content, with another type.
	apply(t, db, cloudapi.Media, "c1", manifest("A", x, "image/webp", 2), manifest("B", y, "video/mp4", 2), miscased)
	if _, err := db.StoreMediaFiles(ctx, []MediaRecord{{ID: "A", MD5: x, ContentType: "image/jpeg", Size: 10},
		{ID: "B", MD5: x, ContentType: "image/jpeg", Size: 10}, {ID: "C", MD5: x, ContentType: "image/jpeg", Size: 10}}, time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	if got := served("C"); got != "image/gif" {
		t.Errorf("C recorded as %s, want its manifest's image/gif, read as the feed reads it", got)
	}
	if got := served("A"); got != "image/webp" {
		t.Errorf("A recorded as %s, want the manifest's image/webp", got)
	}
	if got := served("B"); got != "image/jpeg" {
		t.Errorf("B (old content) recorded as %s, want its own image/jpeg", got)
	}
	apply(t, db, cloudapi.Media, "c2", manifest("A", x, "", 3))
	if err := db.RetypeMedia(ctx, []string{"A", "B", "unknown"}); err != nil {
		t.Fatal(err)
	}
	if a, b := served("A"), served("B"); a != "" || b != "image/jpeg" {
		t.Errorf("after the retype A is %q (want none, as its manifest), B %q (want image/jpeg)", a, b)
	}
}

// The status's counts of media failures and its list of them are read together: a failure
// recorded meanwhile is in both or in neither (a status saying "failed 0" above a failed item
// would send shop IT looking for what is not there).
func TestMediaFailureSummaryIsOneMoment(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	const n = 200
	// The items in the catalog: the status shows the failures of their versions there.
	var manifests []cloudapi.Change
	for i := range n {
		id := fmt.Sprintf("M%03d", i)
		manifests = append(manifests, cloudapi.Change{Collection: cloudapi.Media, ID: id, Op: cloudapi.OpUpsert, Rev: 1,
			Doc: []byte(`{"id":"` + id + `","blob":"b.jpg","size":10,"md5":"giSewY876WG2zjm68uG+ZQ=="}`)})
	}
	apply(t, db, cloudapi.Media, "c1", manifests...)
	done := make(chan error, 1)
	go func() {
		for i := range n {
			kind := MediaFailed
			if i%2 == 1 {
				kind = MediaQuarantined
			}
			if err := db.RecordMediaFailure(ctx, MediaFailure{ID: fmt.Sprintf("M%03d", i), MD5: "giSewY876WG2zjm68uG+ZQ==", Kind: kind, Reason: "r", Attempts: 1, At: time.Now()}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
		}
		counts, list, err := db.MediaFailureSummary(ctx, 2*n)
		if err != nil {
			t.Fatal(err)
		}
		if total := counts[MediaFailed] + counts[MediaQuarantined]; total != int64(len(list)) {
			t.Fatalf("counts %v, %d failures listed: not one moment", counts, len(list))
		}
	}
	if counts, list, err := db.MediaFailureSummary(ctx, 2*n); err != nil || counts[MediaFailed]+counts[MediaQuarantined] != n || len(list) != n {
		t.Fatalf("at the end: counts %v, %d listed, %v; want all %d", counts, len(list), err, n)
	}
}
