package media

import (
	"container/heap"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Priority classes, in the order work is done: what a device has just asked for, then images,
// then documents, then videos (and anything else).
const (
	classOnDemand = iota
	classImage
	classDocument
	classVideo
)

// classOf is the prefetch class of a content type.
func classOf(contentType string) int {
	ct := strings.ToLower(contentType)
	switch {
	case strings.HasPrefix(ct, "image/"):
		return classImage
	case strings.HasPrefix(ct, "video/"), strings.HasPrefix(ct, "audio/"):
		return classVideo
	}
	return classDocument
}

// task is one media item to fetch, at the version of its manifest. A first prefetch can queue
// hundreds of thousands of them, so a task keeps of its manifest only what the download needs,
// in its most compact form: the MD5 as 16 bytes, the content type shared with the other tasks'.
type task struct {
	id    string
	blob  string
	ctype string
	size  int64
	md5   [md5.Size]byte
	class int
	order int64 // FIFO order within a class

	notBefore time.Time // in the delayed heap until then
	why       string    // why it waits: a failure kind, "window" or ""
	attempts  int       // failed attempts at this version so far

	running    bool
	reserved   bool                    // its size is counted against the quota
	resumed    bool                    // the download continued a partial file
	wholeTried bool                    // a resumed download did not match and was fetched again whole
	adopted    bool                    // the last download took over a file already in place
	deleted    bool                    // the item left the catalog while it was downloading
	stop       context.CancelCauseFunc // stops its download, while it runs
	next       *cloudapi.MediaManifest // a newer version seen while it was downloading
	got        atomic.Int64            // bytes in the partial file, for status and on-demand answers

	index int // in whichever heap holds it, -1 in none
}

// set makes the task fetch the version of m, whose MD5 is md5hex (as MediaManifest.HexMD5 gives it).
func (t *task) set(m cloudapi.MediaManifest, md5hex string) {
	t.blob, t.ctype, t.size = m.Blob, internType(m.ContentType), m.Size
	hex.Decode(t.md5[:], []byte(md5hex))
}

// md5hex is the version's MD5 in hexadecimal, the name of its file in the cache.
func (t *task) md5hex() string { return hex.EncodeToString(t.md5[:]) }

// md5b64 is the version's MD5 as the manifest gives it.
func (t *task) md5b64() string { return base64.StdEncoding.EncodeToString(t.md5[:]) }

// contentTypes holds one copy of each content type of the queued tasks: a catalog has a handful.
var contentTypes = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// maxContentTypes bounds contentTypes against a catalog with a content type per item.
const maxContentTypes = 256

func internType(ct string) string {
	contentTypes.Lock()
	defer contentTypes.Unlock()
	if v, ok := contentTypes.m[ct]; ok {
		return v
	}
	if len(contentTypes.m) < maxContentTypes {
		contentTypes.m[ct] = ct
	}
	return ct
}

// readyHeap orders tasks by class, then by order; videos, the largest first, so that the
// prefetch does not end on one long download while the other lanes are idle. It counts its
// tasks by class.
type readyHeap struct {
	ts []*task
	n  [classVideo + 1]int
}

func (h *readyHeap) Len() int { return len(h.ts) }
func (h *readyHeap) Less(i, j int) bool {
	a, b := h.ts[i], h.ts[j]
	switch {
	case a.class != b.class:
		return a.class < b.class
	case a.class == classVideo && a.size != b.size:
		return a.size > b.size
	}
	return a.order < b.order
}
func (h *readyHeap) Swap(i, j int) {
	h.ts[i], h.ts[j] = h.ts[j], h.ts[i]
	h.ts[i].index, h.ts[j].index = i, j
}
func (h *readyHeap) Push(x any) {
	t := x.(*task)
	t.index = len(h.ts)
	h.ts = append(h.ts, t)
	h.n[t.class]++
}
func (h *readyHeap) Pop() any {
	t := popLast(&h.ts)
	h.n[t.class]--
	return t
}
func (h *readyHeap) peek() *task { return h.ts[0] }

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	return h[i].notBefore.Before(h[j].notBefore)
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *delayHeap) Push(x any)   { t := x.(*task); t.index = len(*h); *h = append(*h, t) }
func (h *delayHeap) Pop() any     { return popLast((*[]*task)(h)) }

// delayHeap orders waiting tasks by the time they may run.
type delayHeap []*task

func popLast(h *[]*task) *task {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}

// queue is the fetcher's work: tasks by id, ready ones by priority, the others by time. It is
// guarded by the fetcher's mutex.
type queue struct {
	tasks   map[string]*task
	ready   readyHeap
	delayed delayHeap
	orders  int64

	// Kept as tasks come and go, so that status does not walk a queue of hundreds of thousands.
	sizes   int64               // sizes of every task's version
	waiting map[string]int      // tasks waiting, by reason
	windowN [classVideo + 1]int // tasks waiting for the time window, by class
	running map[*task]bool      // tasks being downloaded
}

// whyWindow is why a large file waits: for the time window.
const whyWindow = "window"

// held is how many tasks of a class the window of the prefetch holds: those ready and the large
// files taken from them to wait for their time window, which would otherwise make room for more
// from the backlog, until every large file of the catalog waited in memory.
func (q *queue) held(class int) int { return q.ready.n[class] + q.windowN[class] }

func newQueue() *queue {
	return &queue{tasks: map[string]*task{}, waiting: map[string]int{}, running: map[*task]bool{}}
}

// add queues a new task, ready now or at notBefore.
func (q *queue) add(t *task) {
	q.orders++
	t.order = q.orders
	t.index = -1
	q.tasks[t.id] = t
	q.sizes += t.size
	q.countWhy(t, 1)
	q.place(t)
}

// forget drops a task that is in no heap: done, or deleted from the catalog.
func (q *queue) forget(t *task) {
	if q.tasks[t.id] != t {
		return
	}
	delete(q.tasks, t.id)
	delete(q.running, t)
	q.sizes -= t.size
	q.setWhy(t, "")
}

// setVersion makes a queued task fetch the version of m.
func (q *queue) setVersion(t *task, m cloudapi.MediaManifest, md5hex string) {
	q.sizes -= t.size
	t.set(m, md5hex)
	q.sizes += t.size
}

// setClass gives a task another class, moving it in the counts by class.
func (q *queue) setClass(t *task, class int) {
	q.countWhy(t, -1)
	t.class = class
	q.countWhy(t, 1)
}

// setWhy records why a queued task waits ("" for not waiting).
func (q *queue) setWhy(t *task, why string) {
	if t.why == why {
		return
	}
	q.countWhy(t, -1)
	t.why = why
	q.countWhy(t, 1)
}

// countWhy adds delta to the counts of tasks waiting for t's reason.
func (q *queue) countWhy(t *task, delta int) {
	if t.why == "" {
		return
	}
	if q.waiting[t.why] += delta; q.waiting[t.why] <= 0 {
		delete(q.waiting, t.why)
	}
	if t.why == whyWindow {
		q.windowN[t.class] += delta
	}
}

// place puts a task that is in no heap where it belongs.
func (q *queue) place(t *task) {
	if t.notBefore.IsZero() {
		heap.Push(&q.ready, t)
	} else {
		heap.Push(&q.delayed, t)
	}
}

// unplace takes a task out of its heap.
func (q *queue) unplace(t *task) {
	if t.index < 0 || t.running {
		return
	}
	if t.notBefore.IsZero() {
		heap.Remove(&q.ready, t.index)
	} else {
		heap.Remove(&q.delayed, t.index)
	}
}

// remove forgets a task that is not running.
func (q *queue) remove(t *task) {
	q.unplace(t)
	q.forget(t)
}

// delay moves a task to wait until at.
func (q *queue) delay(t *task, at time.Time, why string) {
	q.unplace(t)
	t.notBefore = at
	q.setWhy(t, why)
	q.place(t)
}

// retryNow makes a delayed task that is not running ready now, in its class.
func (q *queue) retryNow(t *task) {
	q.unplace(t)
	t.notBefore = time.Time{}
	q.setWhy(t, "")
	q.place(t)
}

// reclass moves a task that is not running to another class.
func (q *queue) reclass(t *task, class int) {
	if t.class == class {
		return
	}
	q.unplace(t)
	q.setClass(t, class)
	q.place(t)
}

// promote makes a task ready with the on-demand class.
func (q *queue) promote(t *task) {
	q.unplace(t)
	q.setClass(t, classOnDemand)
	t.notBefore = time.Time{}
	q.setWhy(t, "")
	q.place(t)
}

// requeue puts a task that ran back in line, to run at at (zero: now).
func (q *queue) requeue(t *task, at time.Time, why string) {
	t.running = false
	delete(q.running, t)
	if at.IsZero() {
		why = ""
	}
	t.notBefore = at
	q.setWhy(t, why)
	q.place(t)
}

// release moves the delayed tasks whose time has come to the ready heap and returns the time the
// next one is due (zero when none waits).
func (q *queue) release(now time.Time) time.Time {
	for len(q.delayed) > 0 {
		t := q.delayed[0]
		if t.notBefore.After(now) {
			return t.notBefore
		}
		heap.Pop(&q.delayed)
		t.notBefore = time.Time{}
		q.setWhy(t, "")
		heap.Push(&q.ready, t)
	}
	return time.Time{}
}

// take pops the first ready task a worker may run: onDemandOnly workers take only what a device
// is waiting for.
func (q *queue) take(onDemandOnly bool) *task {
	if q.ready.Len() == 0 || (onDemandOnly && q.ready.peek().class != classOnDemand) {
		return nil
	}
	t := heap.Pop(&q.ready).(*task)
	t.running = true
	q.running[t] = true
	return t
}

// counts returns the tasks and bytes still to fetch, and those waiting for a reason. It costs
// the number of downloads running, not the length of the queue.
func (q *queue) counts() (pending int, bytes int64, waiting map[string]int) {
	bytes = q.sizes
	for t := range q.running {
		bytes -= min(t.got.Load(), t.size)
	}
	return len(q.tasks), max(bytes, 0), maps.Clone(q.waiting)
}
