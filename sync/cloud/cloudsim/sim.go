package cloudsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Defaults of Options.
const (
	DefaultSeed      = 1
	DefaultProducts  = 1000
	DefaultStoreID   = "shop-001"
	DefaultStoreName = "Demo Shop 001"
	DefaultStoreKey  = "demo-store-key"
	// MaxProducts bounds Options.Products. Ids carry seven digits, and adds need headroom.
	MaxProducts = 5_000_000
)

// Log attribute keys.
const (
	logKeySeed       = "seed"
	logKeyProducts   = "products"
	logKeyHead       = "head"
	logKeySeq        = "seq"
	logKeyCollection = "collection"
	logKeyLines      = "lines"
	logKeyPages      = "pages"
	logKeyFault      = "fault"
	logKeyStatus     = "status"
	logKeyRemote     = "remote"
	logKeySuppressed = "suppressed"
	logKeyAccepted   = "accepted"
	logKeyDuplicate  = "duplicate"
	logKeyRejected   = "rejected"
	logKeyFaults     = "faults"
	logKeyMutation   = "mutation"
	logKeyErr        = "err"
	logKeyPath       = "path"
	logKeyServerID   = "server_id"
	logKeyMedia      = "media"
	logKeySettings   = "settings"
	logKeyMax        = "max"
)

// Options configures a Sim. Zero values take the defaults above.
type Options struct {
	Seed      int64 // 0 means DefaultSeed
	Products  int   // initial catalog size; 0 means DefaultProducts
	StoreID   string
	StoreName string
	StoreKey  string // the bearer key every /v1 request must carry; never logged

	// Served by GET /v1/config; empty by default.
	ServiceBusNamespace string
	MediaContainerURL   string // served as it is, when Media is off
	Flags               map[string]bool

	// Media, when on, makes the media manifests describe real blobs (their MD5s are those of the
	// generated content) in a store the sim fills, and /v1/config hand out a SAS URL for it.
	Media MediaOptions

	// ChangeEvery, when positive, makes Run apply a small mutation at this interval.
	ChangeEvery time.Duration

	Logger *slog.Logger // nil discards logs
}

// Collection indexes, in the order of cloudapi.Collections.
const (
	cProducts = iota
	cPrices
	cStock
	cMedia
	cSettings
	numColls
)

var collNames = [numColls]string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock, cloudapi.Media, cloudapi.Settings}

func collIndex(name string) (int, bool) {
	for i, n := range collNames {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// Change log operations.
const (
	opUpsert uint8 = iota
	opDelete
)

// logEntry records one change of a collection. Entries are appended in rev order.
type logEntry struct {
	rev int64
	idx int32
	op  uint8
}

// collState is the compact per-item state of one collection: everything else about an item is
// generated from (seed, index, version).
type collState struct {
	rev  []int64  // current revision of each item
	ver  []uint32 // content version: bumped by every upsert after the first
	dead []bool   // deleted
	live int
	log  []logEntry // changes after the initial catalog, in rev order
}

func (c *collState) grow() int {
	c.rev = append(c.rev, 0)
	c.ver = append(c.ver, 0)
	c.dead = append(c.dead, false)
	c.live++
	return len(c.rev) - 1
}

// Sim is the reference cloud. All methods are safe for concurrent use.
type Sim struct {
	opts  Options
	log   *slog.Logger
	cat   *catalog
	seed  uint64
	epoch string // distinguishes cursors of this process from those of an earlier run

	mu        sync.RWMutex // protects the fields below
	head      int64        // last revision handed out, over all collections
	mutations int64
	colls     [numColls]collState

	fmu    sync.Mutex // protects the fields below
	faults Faults
	rng    *rand.Rand // drives error, rate-limit, cut and upload-error decisions

	emu        sync.Mutex // protects the fields below
	events     []cloudapi.Event
	eventKeys  map[string]struct{}
	heartbeat  *HeartbeatRecord
	heartbeats int64

	requests atomic.Int64
	injected struct {
		latency, errors, rateLimits, cuts, malformed, uploadErrors, lostAnswers, badAnswers atomic.Int64
	}
	authLog logLimiter

	blobs    *blobStore // nil when Options.Media is off
	blobsErr error
	configs  atomic.Int64 // GET /v1/config requests

	tick <-chan time.Time // tests replace the ChangeEvery ticker
	now  func() time.Time
}

// New builds a sim with its initial catalog: products, then prices, then stock, then media,
// then settings take revisions 1..K in that order.
func New(opts Options) *Sim {
	if opts.Seed == 0 {
		opts.Seed = DefaultSeed
	}
	if opts.Products <= 0 {
		opts.Products = DefaultProducts
	}
	if opts.StoreID == "" {
		opts.StoreID = DefaultStoreID
	}
	if opts.StoreName == "" {
		opts.StoreName = DefaultStoreName
	}
	if opts.StoreKey == "" {
		opts.StoreKey = DefaultStoreKey
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Products > MaxProducts {
		log.Warn("cloudsim: products capped", logKeyProducts, opts.Products, logKeyMax, MaxProducts)
		opts.Products = MaxProducts
	}
	seed := uint64(opts.Seed)
	s := &Sim{
		opts:      opts,
		log:       log,
		seed:      seed,
		cat:       &catalog{seed: seed, settings: newSettings(opts.StoreID, opts.StoreName)},
		epoch:     fmt.Sprintf("%08x", uint32(splitmix64(seed^uint64(time.Now().UnixNano())))),
		rng:       rand.New(rand.NewPCG(seed, tagFaults)),
		eventKeys: make(map[string]struct{}),
		now:       time.Now,
	}
	if opts.Media.enabled() {
		if opts.Media.SASLifetime <= 0 {
			opts.Media.SASLifetime = time.Hour
		}
		s.opts.Media = opts.Media
		s.cat.blobs = newBlobSums()
		s.blobs, s.blobsErr = newBlobStore(opts.Media)
	}
	sizes := [numColls]int{
		cProducts: opts.Products,
		cPrices:   opts.Products,
		cStock:    opts.Products,
		cMedia:    (opts.Products + productsPerMedia - 1) / productsPerMedia,
		cSettings: len(s.cat.settings),
	}
	for ci, n := range sizes {
		c := &s.colls[ci]
		c.rev = make([]int64, n)
		c.ver = make([]uint32, n)
		c.dead = make([]bool, n)
		c.live = n
		for i := range c.rev {
			s.head++
			c.rev[i] = s.head
		}
	}
	log.Info("cloudsim: catalog generated", logKeySeed, opts.Seed, logKeyProducts, opts.Products,
		logKeyMedia, sizes[cMedia], logKeySettings, sizes[cSettings], logKeyHead, s.head)
	return s
}

// Run applies a small mutation every Options.ChangeEvery until ctx ends; with no interval it
// just waits. It returns nil when ctx ends.
func (s *Sim) Run(ctx context.Context) error {
	tick := s.tick
	if tick == nil {
		if s.opts.ChangeEvery <= 0 {
			<-ctx.Done()
			return nil
		}
		t := time.NewTicker(s.opts.ChangeEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			res := s.Mutate(s.smallMutation())
			s.log.Debug("cloudsim: background change", logKeySeq, res.Seq, logKeyHead, res.Head)
		}
	}
}

// smallMutation picks the demo's background change, deterministically from the seed and the
// number of mutations applied so far.
func (s *Sim) smallMutation() Mutation {
	s.mu.RLock()
	seq := s.mutations + 1
	s.mu.RUnlock()
	r := rand.New(rand.NewPCG(s.seed, tagTick^uint64(seq)<<8))
	m := Mutation{PriceChanges: 1 + r.IntN(20), StockChanges: 1 + r.IntN(50), Renames: r.IntN(3)}
	if r.IntN(10) == 0 {
		m.Deletes = 1
	}
	if r.IntN(10) == 0 {
		m.Adds = 1
	}
	return m
}

// Mutation asks for changes to the catalog. Each count is how many distinct live products get
// that change; within one mutation a product gets at most one change.
type Mutation struct {
	PriceChanges int `json:"price_changes"`
	StockChanges int `json:"stock_changes"`
	Deletes      int `json:"deletes"`       // deletes the product and its price and stock
	Adds         int `json:"adds"`          // adds a product with its price and stock (and media manifest when due)
	Renames      int `json:"renames"`       // new product name and description
	MediaChanges int `json:"media_changes"` // a media item gets a new blob (new size and MD5)
	MediaDeletes int `json:"media_deletes"` // a media item is deleted
}

// MaxMutationCount bounds each count of a Mutation.
const MaxMutationCount = 1_000_000

// Validate reports a count that is negative or too large.
func (m Mutation) Validate() error {
	counts := []struct {
		name string
		n    int
	}{{"price_changes", m.PriceChanges}, {"stock_changes", m.StockChanges}, {"deletes", m.Deletes}, {"adds", m.Adds}, {"renames", m.Renames},
		{"media_changes", m.MediaChanges}, {"media_deletes", m.MediaDeletes}}
	for _, c := range counts {
		if c.n < 0 || c.n > MaxMutationCount {
			return fmt.Errorf("mutation: %s = %d outside 0..%d", c.name, c.n, MaxMutationCount)
		}
	}
	return nil
}

// MutationResult reports what a mutation changed, per collection, in the order applied.
type MutationResult struct {
	Seq      int64               `json:"seq"`  // 1 for the first mutation of this sim
	Head     int64               `json:"head"` // the last revision after the mutation
	Upserted map[string][]string `json:"upserted"`
	Deleted  map[string][]string `json:"deleted"`
}

// Mutate applies m. Which products are changed, and how, is a pure function of the seed and
// the mutation's sequence number. Counts are clamped to 0..MaxMutationCount and to what exists.
func (s *Sim) Mutate(m Mutation) MutationResult {
	clamp := func(n int) int { return min(max(n, 0), MaxMutationCount) }
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutations++
	res := MutationResult{Seq: s.mutations, Upserted: map[string][]string{}, Deleted: map[string][]string{}}
	r := rand.New(rand.NewPCG(s.seed, tagMutation^uint64(res.Seq)<<8))
	used := make(map[int]struct{})
	upsert := func(coll, idx int) {
		s.changeLocked(coll, idx, opUpsert)
		res.Upserted[collNames[coll]] = append(res.Upserted[collNames[coll]], s.idOf(coll, idx))
	}
	each := func(n int, f func(idx int)) {
		for range clamp(n) {
			idx, ok := s.pickLiveLocked(r, used, cProducts)
			if !ok {
				return
			}
			f(idx)
		}
	}
	each(m.Renames, func(i int) { upsert(cProducts, i) })
	each(m.PriceChanges, func(i int) { upsert(cPrices, i) })
	each(m.StockChanges, func(i int) { upsert(cStock, i) })
	each(m.Deletes, func(i int) {
		for _, coll := range []int{cProducts, cPrices, cStock} {
			s.changeLocked(coll, i, opDelete)
			res.Deleted[collNames[coll]] = append(res.Deleted[collNames[coll]], s.idOf(coll, i))
		}
	})
	usedMedia := make(map[int]struct{})
	for range clamp(m.MediaChanges) {
		if idx, ok := s.pickLiveLocked(r, usedMedia, cMedia); ok {
			upsert(cMedia, idx)
		}
	}
	for range clamp(m.MediaDeletes) {
		if idx, ok := s.pickLiveLocked(r, usedMedia, cMedia); ok {
			s.changeLocked(cMedia, idx, opDelete)
			res.Deleted[collNames[cMedia]] = append(res.Deleted[collNames[cMedia]], s.idOf(cMedia, idx))
		}
	}
	for range clamp(m.Adds) {
		if len(s.colls[cProducts].rev) >= maxIDNumber {
			break
		}
		idx := s.colls[cProducts].grow()
		s.colls[cPrices].grow()
		s.colls[cStock].grow()
		if mi := idx / productsPerMedia; mi >= len(s.colls[cMedia].rev) {
			s.colls[cMedia].grow()
			upsert(cMedia, mi)
		}
		upsert(cProducts, idx)
		upsert(cPrices, idx)
		upsert(cStock, idx)
	}
	res.Head = s.head
	s.log.Debug("cloudsim: mutation applied", logKeySeq, res.Seq, logKeyHead, res.Head)
	return res
}

// changeLocked gives item idx of coll the next revision and logs the change. An upsert of an
// item that already had a revision bumps its content version; a new item starts at version 0.
func (s *Sim) changeLocked(coll, idx int, op uint8) {
	c := &s.colls[coll]
	s.head++
	switch {
	case op == opDelete:
		c.dead[idx] = true
		c.live--
	case c.rev[idx] != 0:
		c.ver[idx]++
	}
	c.rev[idx] = s.head
	c.log = append(c.log, logEntry{rev: s.head, idx: int32(idx), op: op})
}

// pickLiveLocked picks a live item of coll not in used, and adds it to used.
func (s *Sim) pickLiveLocked(r *rand.Rand, used map[int]struct{}, coll int) (int, bool) {
	c := &s.colls[coll]
	if c.live == 0 {
		return 0, false
	}
	n := len(c.rev)
	free := func(i int) bool {
		_, taken := used[i]
		return !c.dead[i] && !taken
	}
	// Random probes find a free product at once unless most are gone; then scan.
	for range 64 {
		if i := r.IntN(n); free(i) {
			used[i] = struct{}{}
			return i, true
		}
	}
	start := r.IntN(n)
	for k := range n {
		if i := (start + k) % n; free(i) {
			used[i] = struct{}{}
			return i, true
		}
	}
	return 0, false
}

// idOf returns the id of item idx of coll.
func (s *Sim) idOf(coll, idx int) string {
	switch coll {
	case cMedia:
		return itemID('M', idx)
	case cSettings:
		return s.cat.settings[idx].key
	default:
		return itemID('P', idx)
	}
}

// appendID appends the id of item idx of coll, unquoted.
func (s *Sim) appendID(b []byte, coll, idx int) []byte {
	switch coll {
	case cMedia:
		return appendItemID(b, 'M', idx)
	case cSettings:
		return append(b, s.cat.settings[idx].key...) // keys are plain ASCII
	default:
		return appendItemID(b, 'P', idx)
	}
}

// appendDoc appends the document of item idx of coll at version ver.
func (s *Sim) appendDoc(b []byte, coll, idx int, ver uint32) []byte {
	switch coll {
	case cProducts:
		return s.cat.appendProduct(b, idx, ver)
	case cPrices:
		return s.cat.appendPrice(b, idx, ver)
	case cStock:
		return s.cat.appendStock(b, idx, ver)
	case cMedia:
		return s.cat.appendMedia(b, idx, ver)
	default:
		return append(b, s.cat.settings[idx].doc...)
	}
}

// ErrUnknownCollection is returned for a collection name the contract does not define.
var ErrUnknownCollection = errors.New("cloudsim: unknown collection")

// CollectionStats counts one collection's items.
type CollectionStats struct {
	Live    int `json:"live"`
	Deleted int `json:"deleted"`
	Changes int `json:"changes"` // changes logged since the initial catalog
}

// FaultCounts counts injected faults by kind.
type FaultCounts struct {
	Latency     int64 `json:"latency"`
	Errors      int64 `json:"errors"`
	RateLimits  int64 `json:"rate_limits"`
	Cuts        int64 `json:"cuts"`
	Malformed   int64 `json:"malformed_lines"`
	UploadError int64 `json:"upload_errors"`
	LostAnswers int64 `json:"lost_answers"`
	BadAnswers  int64 `json:"bad_answers"`
}

// Stats is a snapshot of the sim's counters.
type Stats struct {
	Head        int64                      `json:"head"`
	Mutations   int64                      `json:"mutations"`
	Collections map[string]CollectionStats `json:"collections"`
	Requests    int64                      `json:"requests"` // /v1 requests received
	Faults      FaultCounts                `json:"faults_injected"`
	Events      int                        `json:"events"` // accepted events
	Heartbeats  int64                      `json:"heartbeats"`
	Configs     int64                      `json:"config_requests"` // GET /v1/config answered
}

// Stats returns the current counters.
func (s *Sim) Stats() Stats {
	st := Stats{Collections: make(map[string]CollectionStats, numColls)}
	s.mu.RLock()
	st.Head, st.Mutations = s.head, s.mutations
	for i := range s.colls {
		c := &s.colls[i]
		st.Collections[collNames[i]] = CollectionStats{Live: c.live, Deleted: len(c.rev) - c.live, Changes: len(c.log)}
	}
	s.mu.RUnlock()
	st.Requests = s.requests.Load()
	st.Configs = s.configs.Load()
	st.Faults = FaultCounts{
		Latency: s.injected.latency.Load(), Errors: s.injected.errors.Load(), RateLimits: s.injected.rateLimits.Load(),
		Cuts: s.injected.cuts.Load(), Malformed: s.injected.malformed.Load(), UploadError: s.injected.uploadErrors.Load(),
		LostAnswers: s.injected.lostAnswers.Load(), BadAnswers: s.injected.badAnswers.Load(),
	}
	s.emu.Lock()
	st.Events, st.Heartbeats = len(s.events), s.heartbeats
	s.emu.Unlock()
	return st
}

// Head returns the last revision handed out.
func (s *Sim) Head() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.head
}

// logLimiter lets a repeated log line through at most once per interval.
type logLimiter struct {
	mu         sync.Mutex // protects the fields below
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were suppressed since the last one.
func (l *logLimiter) allow(now time.Time, every time.Duration) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
