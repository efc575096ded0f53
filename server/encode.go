package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/storeedge/storeedge/internal/jsonenc"
	"github.com/storeedge/storeedge/storage"
)

// Catalog answers are assembled by appending to a pooled buffer: the stored documents are valid
// JSON already (the feed decoder checked them before storage kept them), so they are copied as
// they are instead of being decoded and encoded again for every request.

// maxPooledBuffer keeps a rare huge answer from pinning its memory in the pool.
const maxPooledBuffer = 1 << 20

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

func getBuffer() *[]byte { return bufPool.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// writeBody sends a complete JSON answer.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	writeTyped(w, status, jsonContentValue, body)
}

// autoLengthMax is the size up to which net/http keeps an answer in its buffer until the handler
// returns and then sends the Content-Length itself: a small answer leaves it to net/http rather
// than allocate a header value that net/http would copy and parse again (net/http's
// bufferBeforeChunkingSize).
const autoLengthMax = 2048

// writeTyped sends a complete answer of the given Content-Type, with its Content-Length.
func writeTyped(w http.ResponseWriter, status int, contentType []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentType
	if len(body) > autoLengthMax {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	w.Write(body)
}

// writeJSON encodes v and sends it; for the answers that are not hot enough to hand-assemble.
// Documents keep their characters: no HTML escaping of < > &, which only matters inside HTML.
// Nothing is sent when v cannot be encoded.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b := getBuffer()
	defer putBuffer(b)
	buf := bytes.NewBuffer(*b)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	*b = buf.Bytes()
	writeBody(w, status, *b)
	return nil
}

// appendItem appends {"id","rev","seq","doc"}.
func appendItem(b []byte, it *storage.Item) []byte {
	b = append(b, `{"id":`...)
	b = jsonenc.AppendString(b, it.ID)
	b = append(b, `,"rev":`...)
	b = strconv.AppendInt(b, it.Rev, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, it.Seq, 10)
	b = append(b, `,"doc":`...)
	b = appendDoc(b, it.Doc)
	return append(b, '}')
}

// appendItems appends {"items":[...]} with "next" when next is not empty.
func appendItems(b []byte, items []storage.Item, next string) []byte {
	b = append(b, `{"items":[`...)
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendItem(b, &items[i])
	}
	b = append(b, ']')
	if next != "" {
		b = append(b, `,"next":`...)
		b = jsonenc.AppendString(b, next)
	}
	return append(b, '}')
}

// appendChange appends one entry of the device delta feed; a deletion has no doc.
func appendChange(b []byte, c *storage.LocalChange) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, c.Seq, 10)
	b = append(b, `,"collection":`...)
	b = jsonenc.AppendString(b, c.Collection)
	b = append(b, `,"id":`...)
	b = jsonenc.AppendString(b, c.ID)
	b = append(b, `,"op":`...)
	b = jsonenc.AppendString(b, c.Op)
	b = append(b, `,"rev":`...)
	b = strconv.AppendInt(b, c.Rev, 10)
	if len(c.Doc) > 0 {
		b = append(b, `,"doc":`...)
		b = append(b, c.Doc...)
	}
	return append(b, '}')
}

func appendDoc(b []byte, doc []byte) []byte {
	if len(doc) == 0 {
		return append(b, "null"...)
	}
	return append(b, doc...)
}
