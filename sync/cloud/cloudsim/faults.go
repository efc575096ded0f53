package cloudsim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Faults are the failures the sim injects into /v1 requests, to exercise the client's retry,
// truncation and quarantine paths. The zero value injects nothing.
type Faults struct {
	LatencyMS         int     `json:"latency_ms"`          // delay before answering any /v1 request
	PageDelayMS       int     `json:"page_delay_ms"`       // delay before each further page of a streamed feed answer
	ErrorRate         float64 `json:"error_rate"`          // share of /v1 requests answered 500 or 503
	RateLimitRate     float64 `json:"rate_limit_rate"`     // share of /v1 requests answered 429
	RetryAfterSeconds int     `json:"retry_after_seconds"` // Retry-After of a 429; 0 means 1
	RetryAfter503     int     `json:"retry_after_503"`     // Retry-After of the injected 503s, in seconds; 0: none
	RetryAfterDate    bool    `json:"retry_after_date"`    // Retry-After as an HTTP date instead of seconds
	CutRate           float64 `json:"cut_rate"`            // share of feed responses cut inside a line
	MalformedRate     float64 `json:"malformed_rate"`      // share of (item, rev) whose upsert line is corrupted
	UploadErrorRate   float64 `json:"upload_error_rate"`   // share of event uploads answered 503, nothing stored
	LostAnswerRate    float64 `json:"lost_answer_rate"`    // share of event uploads stored, then answered 503 (the answer lost)
	// BadAnswerRate: share of event uploads stored, then answered 200 with a JSON body that is not
	// the upload answer (its accepted keys of another type, and every other time its duplicate
	// keys too): a platform's bug.
	BadAnswerRate float64 `json:"bad_answer_rate"`
	SASRefusals   int     `json:"sas_refusals"` // the next N media container URLs carry a SAS the store refuses
}

// Validate names the first field out of range.
func (f Faults) Validate() error {
	if f.LatencyMS < 0 || f.LatencyMS > 600_000 {
		return fmt.Errorf("faults: latency_ms = %d outside 0..600000", f.LatencyMS)
	}
	if f.PageDelayMS < 0 || f.PageDelayMS > 60_000 {
		return fmt.Errorf("faults: page_delay_ms = %d outside 0..60000", f.PageDelayMS)
	}
	if f.SASRefusals < 0 || f.SASRefusals > 1_000_000 {
		return fmt.Errorf("faults: sas_refusals = %d outside 0..1000000", f.SASRefusals)
	}
	if f.RetryAfterSeconds < 0 || f.RetryAfterSeconds > 86400 {
		return fmt.Errorf("faults: retry_after_seconds = %d outside 0..86400", f.RetryAfterSeconds)
	}
	if f.RetryAfter503 < 0 || f.RetryAfter503 > 86400 {
		return fmt.Errorf("faults: retry_after_503 = %d outside 0..86400", f.RetryAfter503)
	}
	rates := []struct {
		name string
		v    float64
	}{{"error_rate", f.ErrorRate}, {"rate_limit_rate", f.RateLimitRate}, {"cut_rate", f.CutRate},
		{"malformed_rate", f.MalformedRate}, {"upload_error_rate", f.UploadErrorRate},
		{"lost_answer_rate", f.LostAnswerRate}, {"bad_answer_rate", f.BadAnswerRate}}
	for _, r := range rates {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("faults: %s = %v outside 0..1", r.name, r.v)
		}
	}
	return nil
}

// SetFaults replaces the injected faults.
func (s *Sim) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.fmu.Lock()
	s.faults = f
	s.fmu.Unlock()
	s.log.Info("cloudsim: faults set", logKeyFaults, f)
	return nil
}

// Faults returns the injected faults.
func (s *Sim) Faults() Faults {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.faults
}

// setRetryAfter sets the Retry-After header of an injected refusal to secs seconds from now, as
// delay-seconds or, with RetryAfterDate, as an HTTP date (cloud-api.md allows both). Nothing is set
// for secs <= 0.
func (f Faults) setRetryAfter(h http.Header, secs int, now time.Time) {
	switch {
	case secs <= 0:
	case f.RetryAfterDate:
		h.Set("Retry-After", now.Add(time.Duration(secs)*time.Second).UTC().Format(http.TimeFormat))
	default:
		h.Set("Retry-After", strconv.Itoa(secs))
	}
}

// takeSASRefusal reports whether the next container URL must be refused, counting it.
func (s *Sim) takeSASRefusal() bool {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.faults.SASRefusals <= 0 {
		return false
	}
	s.faults.SASRefusals--
	return true
}

// roll reports whether a fault of the given rate strikes now.
func (s *Sim) roll(rate float64) bool {
	if rate <= 0 {
		return false
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.rng.Float64() < rate
}

// randN returns a random number in [0, n) from the fault generator.
func (s *Sim) randN(n int64) int64 {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.rng.Int64N(n)
}

// corruption is a way of breaking a change line.
type corruption uint8

const (
	corruptNone corruption = iota
	corruptInvalidJSON
	corruptDocNotObject
	corruptNoDoc
	corruptBadOp
	corruptWrongID
	corruptMissingName
	corruptBadBarcode
	corruptNegativeAmount
	corruptBadCurrency
	corruptQuantityType
	corruptZeroSize
	corruptBadMD5
	corruptMissingValue
)

var corruptionNames = [...]string{
	corruptNone:           "",
	corruptInvalidJSON:    "invalid_json",
	corruptDocNotObject:   "doc_not_object",
	corruptNoDoc:          "upsert_without_doc",
	corruptBadOp:          "bad_op",
	corruptWrongID:        "wrong_doc_id",
	corruptMissingName:    "missing_name",
	corruptBadBarcode:     "bad_barcode",
	corruptNegativeAmount: "negative_amount",
	corruptBadCurrency:    "bad_currency",
	corruptQuantityType:   "quantity_not_integer",
	corruptZeroSize:       "zero_size",
	corruptBadMD5:         "bad_md5",
	corruptMissingValue:   "missing_value",
}

func (c corruption) String() string { return corruptionNames[c] }

// collCorruptions lists the corruptions each collection's lines may suffer. Every one of them
// breaks a rule of docs/cloud-api.md, so a conforming client must quarantine the line.
var collCorruptions = [numColls][]corruption{
	cProducts: {corruptInvalidJSON, corruptDocNotObject, corruptNoDoc, corruptBadOp, corruptWrongID, corruptMissingName, corruptBadBarcode},
	cPrices:   {corruptInvalidJSON, corruptDocNotObject, corruptNoDoc, corruptBadOp, corruptWrongID, corruptNegativeAmount, corruptBadCurrency},
	cStock:    {corruptInvalidJSON, corruptDocNotObject, corruptNoDoc, corruptBadOp, corruptWrongID, corruptQuantityType},
	cMedia:    {corruptInvalidJSON, corruptDocNotObject, corruptNoDoc, corruptBadOp, corruptWrongID, corruptZeroSize, corruptBadMD5},
	cSettings: {corruptInvalidJSON, corruptDocNotObject, corruptNoDoc, corruptBadOp, corruptWrongID, corruptMissingValue},
}

// corruptionOf decides whether the upsert of item idx at revision rev is corrupted, and how. It
// is a pure function of (seed, collection, item, rev) so that the same change is corrupted every
// time it is sent, as a bug in the platform would be; and since it compares a hash with the rate,
// raising the rate only adds corrupted changes.
func (s *Sim) corruptionOf(coll, idx int, rev int64, rate float64) corruption {
	if rate <= 0 {
		return corruptNone
	}
	h := splitmix64(newItemRand(s.seed, tagCorrupt^uint64(coll)<<8, idx, 0).s ^ uint64(rev))
	if float64(h>>11)/(1<<53) >= rate {
		return corruptNone
	}
	kinds := collCorruptions[coll]
	return kinds[splitmix64(h)%uint64(len(kinds))]
}

// appendCorruptChange appends a broken upsert line (without its newline) for item idx carrying
// doc. This path is rare, so it may use encoding/json.
func (s *Sim) appendCorruptChange(b []byte, coll, idx int, rev int64, doc []byte, kind corruption) []byte {
	b = append(b, `{"collection":"`...)
	b = append(b, collNames[coll]...)
	b = append(b, `","id":"`...)
	b = s.appendID(b, coll, idx)
	op := "upsert"
	if kind == corruptBadOp {
		op = "replace"
	}
	b = append(b, `","op":"`...)
	b = append(b, op...)
	b = append(b, `","rev":`...)
	b = appendInt(b, rev)
	switch kind {
	case corruptNoDoc:
		return append(b, '}')
	case corruptDocNotObject:
		return append(b, `,"doc":"corrupted"}`...)
	case corruptInvalidJSON:
		// The line stops halfway through the document: the object is never closed.
		b = append(b, `,"doc":`...)
		return append(b, doc[:len(doc)/2]...)
	case corruptBadOp:
		b = append(b, `,"doc":`...)
		b = append(b, doc...)
		return append(b, '}')
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		panic("cloudsim: generated doc is not JSON: " + err.Error()) // a generator bug
	}
	id := s.idOf(coll, idx)
	switch kind {
	case corruptWrongID:
		field := "id"
		switch coll {
		case cPrices, cStock:
			field = "product_id"
		case cSettings:
			field = "key"
		}
		m[field] = json.RawMessage(strconv.Quote(id + "-X"))
	case corruptMissingName:
		delete(m, "name")
	case corruptBadBarcode:
		m["barcodes"] = json.RawMessage(`["12 34"]`)
	case corruptNegativeAmount:
		amount, _ := strconv.ParseInt(string(m["amount"]), 10, 64)
		m["amount"] = json.RawMessage(strconv.FormatInt(-max(amount, 1), 10))
	case corruptBadCurrency:
		m["currency"] = json.RawMessage(`"euro"`)
	case corruptQuantityType:
		m["quantity"] = json.RawMessage(`"many"`)
	case corruptZeroSize:
		m["size"] = json.RawMessage(`0`)
	case corruptBadMD5:
		m["md5"] = json.RawMessage(`"not-an-md5"`)
	case corruptMissingValue:
		delete(m, "value")
	}
	bad, err := json.Marshal(m)
	if err != nil {
		panic("cloudsim: corrupt doc: " + err.Error())
	}
	b = append(b, `,"doc":`...)
	b = append(b, bad...)
	return append(b, '}')
}
