package media

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// walkCounts is what counts must answer, found the long way: a walk over every task.
func walkCounts(q *queue) (pending int, bytes int64, waiting map[string]int, window [classVideo + 1]int) {
	waiting = map[string]int{}
	for _, t := range q.tasks {
		pending++
		bytes += max(t.size-t.got.Load(), 0)
		if t.why != "" {
			waiting[t.why]++
		}
		if t.why == whyWindow {
			window[t.class]++
		}
	}
	return pending, bytes, waiting, window
}

func manifest(r *rand.Rand, id string) (cloudapi.MediaManifest, string) {
	sum := md5.Sum([]byte(fmt.Sprint(id, r.Int())))
	return cloudapi.MediaManifest{ID: id, Blob: "b/" + id, Size: 1 + r.Int64N(1<<20), MD5: base64.StdEncoding.EncodeToString(sum[:]),
		ContentType: []string{"image/jpeg", "video/mp4", "application/pdf"}[r.IntN(3)]}, hex.EncodeToString(sum[:])
}

// The queue's kept totals (tasks, bytes still to fetch, tasks waiting by reason) equal a walk over
// its tasks through random work: tasks added, taken, partly downloaded, put back with and without
// a reason to wait, delayed, promoted, released, given a new version, removed and finished.
func TestQueueTotalsMatchAWalk(tt *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	q := newQueue()
	now := time.Unix(1e9, 0)
	var running []*task
	reasons := []string{"window", "unreachable", "no_space", ""}
	for step := range 5000 {
		id := fmt.Sprint("M", r.IntN(200))
		t := q.tasks[id]
		switch k := r.IntN(9); {
		case k == 0 && t == nil:
			m, h := manifest(r, id)
			nt := &task{id: id, class: classOf(m.ContentType)}
			nt.set(m, h)
			if r.IntN(3) == 0 {
				nt.notBefore, nt.why = now.Add(time.Duration(r.IntN(100))*time.Second), reasons[r.IntN(3)]
			}
			q.add(nt)
		case k == 1:
			if nt := q.take(r.IntN(4) == 0); nt != nil {
				nt.got.Store(r.Int64N(nt.size + 1))
				running = append(running, nt)
			}
		case k == 2 && len(running) > 0:
			i := r.IntN(len(running))
			rt := running[i]
			running = append(running[:i], running[i+1:]...)
			if r.IntN(2) == 0 {
				q.forget(rt) // done
			} else {
				rt.got.Store(0)
				q.requeue(rt, now.Add(time.Duration(r.IntN(3))*time.Second), reasons[r.IntN(len(reasons))])
			}
		case k == 3 && t != nil && !t.running:
			q.delay(t, now.Add(time.Duration(1+r.IntN(50))*time.Second), reasons[r.IntN(3)])
		case k == 4 && t != nil && !t.running && r.IntN(2) == 0:
			q.promote(t)
		case k == 4 && t != nil && !t.running:
			q.reclass(t, r.IntN(classVideo+1))
		case k == 5 && t != nil && !t.running:
			q.remove(t)
		case k == 6 && t != nil && !t.running:
			m, h := manifest(r, id)
			q.setVersion(t, m, h)
		case k == 7:
			now = now.Add(time.Duration(r.IntN(20)) * time.Second)
			q.release(now)
		case k == 8 && len(running) > 0:
			rt := running[r.IntN(len(running))]
			rt.got.Store(r.Int64N(rt.size + 1))
		}
		wp, wb, ww, wn := walkCounts(q)
		p, b, w := q.counts()
		if p != wp || b != wb || !maps.Equal(w, ww) || q.windowN != wn {
			tt.Fatalf("step %d: counts %d tasks, %d bytes, waiting %v, for the window by class %v; a walk finds %d, %d, %v, %v",
				step, p, b, w, q.windowN, wp, wb, ww, wn)
		}
	}
}
