package support

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/storeedge/storeedge/ops/logship"
)

// MaxAnswerBytes bounds an answer's body: a Service Bus namespace of the Standard tier takes
// messages of at most 256 KB, headers included.
const MaxAnswerBytes = 192 << 10

// Answer is the body of an answer on the reply queue.
type Answer struct {
	RequestID  string    `json:"request_id"`
	Kind       string    `json:"kind"`
	Shop       string    `json:"shop"`
	Server     string    `json:"server"`
	AnsweredAt time.Time `json:"answered_at"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	Result     any       `json:"result,omitempty"`
	// Truncated names the parts of the result shortened or left out to fit MaxAnswerBytes.
	Truncated []string `json:"truncated,omitempty"`
}

// shrinker is a result that can give up some of its content to fit: shrink drops some and
// names the part, or reports that nothing is left to drop.
type shrinker interface {
	shrink() (part string, ok bool)
}

// encodeAnswer renders a as JSON of at most limit bytes, with every configured secret and every
// pattern log shipping redacts removed from its text. A result too large is shrunk; one that
// cannot be shrunk enough is replaced by an error saying so.
func encodeAnswer(a Answer, red *logship.Redactor, limit int) ([]byte, error) {
	for {
		b, err := redactedJSON(a, red)
		if err != nil {
			return nil, err
		}
		if len(b) <= limit {
			return b, nil
		}
		s, ok := a.Result.(shrinker)
		if !ok {
			break
		}
		part, ok := s.shrink()
		if !ok {
			break
		}
		if !slices.Contains(a.Truncated, part) {
			a.Truncated = append(a.Truncated, part)
		}
	}
	a.OK, a.Result, a.Truncated = false, nil, nil
	a.Error = fmt.Sprintf("the answer is larger than the %d bytes a message may carry, even shortened", limit)
	return redactedJSON(a, red)
}

// redactedJSON encodes a as JSON with every string of its error and its result redacted as log
// shipping redacts text. The envelope (the request's id, the kind, the shop and the server) is
// kept as it is: the vendor matches answers by it, and a UUID's "1234-5678" is no pairing code.
func redactedJSON(a Answer, red *logship.Redactor) ([]byte, error) {
	if a.Result != nil {
		raw, err := json.Marshal(a.Result)
		if err != nil {
			return nil, fmt.Errorf("support: encode answer: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var tree any
		if err := dec.Decode(&tree); err != nil {
			return nil, fmt.Errorf("support: encode answer: %w", err)
		}
		a.Result = redactTree(tree, red)
	}
	a.Error = red.Text(a.Error)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(a); err != nil {
		return nil, fmt.Errorf("support: encode answer: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

func redactTree(v any, red *logship.Redactor) any {
	switch x := v.(type) {
	case string:
		return red.Text(x)
	case []any:
		for i := range x {
			x[i] = redactTree(x[i], red)
		}
	case map[string]any:
		for k, val := range x {
			x[k] = redactTree(val, red)
		}
	}
	return v
}
