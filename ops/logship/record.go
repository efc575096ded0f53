package logship

import (
	"bytes"
	"compress/gzip"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/storeedge/storeedge/internal/jsonenc"
)

// entry is a log record as the Handler captured it: values copied or turned to text at the
// call, so that the writer goroutine never touches the caller's data.
type entry struct {
	time  time.Time
	level slog.Level
	msg   string
	attrs []field
}

// field is one attribute, its key dotted with the groups around it ("request.id"). val is a
// string, int64, uint64, float64, bool, time.Time or json.RawMessage.
type field struct {
	key string
	val any
}

// Limits on what one record may carry to the intake.
const (
	maxStringBytes = 8 << 10  // a message or string value; longer ones are cut
	maxAttrs       = 64       // attributes past these are left out
	maxLineBytes   = 64 << 10 // a whole record; a bigger one is replaced by a short notice
)

// appendFields adds the attributes of a, dotted under prefix, flattening groups.
func appendFields(dst []field, prefix string, a slog.Attr) []field {
	v := a.Value.Resolve()
	if a.Key == "" && (v.Kind() != slog.KindGroup) {
		return dst // an empty attribute, which handlers ignore
	}
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			dst = appendFields(dst, p, g)
		}
		return dst
	}
	return append(dst, field{key: prefix + a.Key, val: plain(v)})
}

// plain is v as a value the writer goroutine may hold on to.
func plain(v slog.Value) (out any) {
	// A typed nil (a nil *url.URL, a nil *MyError) panics in its String or Error, which slog's
	// own handlers survive: so does the copy for shipping, which runs on the logging goroutine.
	defer func() {
		if r := recover(); r != nil {
			out = fmt.Sprintf("!PANIC: %v", r)
		}
	}()
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindFloat64:
		return v.Float64()
	case slog.KindBool:
		return v.Bool()
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindTime:
		return v.Time()
	}
	switch x := v.Any().(type) {
	case nil:
		return nil
	case error:
		return x.Error()
	case json.Marshaler, encoding.TextMarshaler:
		if b, err := json.Marshal(x); err == nil {
			return json.RawMessage(b)
		}
	case fmt.Stringer:
		return x.String()
	case []byte:
		return string(x)
	}
	if b, err := json.Marshal(v.Any()); err == nil {
		return json.RawMessage(b)
	}
	return fmt.Sprint(v.Any())
}

// Meta is what every shipped record says about where it comes from.
type Meta struct {
	ServerID string `json:"server_id"`
	ShopID   string `json:"shop_id,omitempty"`
	Version  string `json:"version"`
}

// encodeLine writes e, redacted, as one JSON object on one line (no sequence number: the batch
// adds it), and returns buf.
func encodeLine(buf []byte, e entry, m Meta, r *Redactor) []byte {
	start := len(buf)
	buf = append(buf, `{"time":`...)
	buf = strconv.AppendQuote(buf, e.time.UTC().Format(time.RFC3339Nano))
	buf = append(buf, `,"level":`...)
	buf = jsonenc.AppendString(buf, e.level.String())
	buf = append(buf, `,"message":`...)
	buf = jsonenc.AppendString(buf, cut(r.Text(e.msg)))
	buf = append(buf, `,"server_id":`...)
	buf = jsonenc.AppendString(buf, m.ServerID)
	if m.ShopID != "" {
		buf = append(buf, `,"shop_id":`...)
		buf = jsonenc.AppendString(buf, m.ShopID)
	}
	buf = append(buf, `,"version":`...)
	buf = jsonenc.AppendString(buf, m.Version)
	buf = append(buf, `,"attrs":{`...)
	for i, f := range e.attrs {
		if i == maxAttrs {
			break
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = jsonenc.AppendString(buf, cut(f.key))
		buf = append(buf, ':')
		buf = appendValue(buf, r.Value(f.key, f.val))
	}
	buf = append(buf, "}}\n"...)
	if len(buf)-start > maxLineBytes {
		notice := entry{time: e.time, level: e.level, msg: "record too large to ship (" + strconv.Itoa(len(buf)-start) + " bytes); see the local log"}
		return encodeLine(buf[:start], notice, m, r)
	}
	return buf
}

func appendValue(buf []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...)
	case string:
		return jsonenc.AppendString(buf, cut(x))
	case int64:
		return strconv.AppendInt(buf, x, 10)
	case uint64:
		return strconv.AppendUint(buf, x, 10)
	case float64:
		if b, err := json.Marshal(x); err == nil { // NaN and ±Inf are not JSON
			return append(buf, b...)
		}
		return jsonenc.AppendString(buf, strconv.FormatFloat(x, 'g', -1, 64))
	case bool:
		return strconv.AppendBool(buf, x)
	case time.Time:
		return strconv.AppendQuote(buf, x.UTC().Format(time.RFC3339Nano))
	case json.RawMessage:
		if len(x) > maxStringBytes {
			return jsonenc.AppendString(buf, cut(string(x)))
		}
		return append(buf, x...)
	}
	return jsonenc.AppendString(buf, cut(fmt.Sprint(v)))
}

// cut shortens s to maxStringBytes on a character boundary, marking the cut.
func cut(s string) string {
	if len(s) <= maxStringBytes {
		return s
	}
	n := maxStringBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…(cut)"
}

// spooled is one record read back from the disk buffer.
type spooled struct {
	seq  uint64
	line []byte // a JSON object, without the line end
}

// encodeBatch is the request body: the records as one JSON array, each with its sequence number
// first, gzip-compressed.
func encodeBatch(recs []spooled) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte{'['})
	for i, r := range recs {
		if i > 0 {
			zw.Write([]byte{','})
		}
		fmt.Fprintf(zw, `{"seq":%d,`, r.seq)
		zw.Write(r.line[1:])
	}
	zw.Write([]byte{']'})
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
