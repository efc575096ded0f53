package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/storeedge/storeedge/internal/strictjson"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// maxLookupKeys bounds each list of a lookup, so a basket stays one quick round trip.
const maxLookupKeys = 200

type lookupRequest struct {
	IDs      []string `json:"ids"`
	Barcodes []string `json:"barcodes"`
}

type lookupItem struct {
	ID      string          `json:"id"`
	Barcode string          `json:"barcode,omitempty"` // the barcode asked for, when found by barcode
	Product json.RawMessage `json:"product"`
	Price   json.RawMessage `json:"price"` // null when the product has no price
	Stock   json.RawMessage `json:"stock"` // null when the product has no stock level
}

type lookupResponse struct {
	Items   []lookupItem `json:"items"`
	Missing []string     `json:"missing"`
}

// lookup answers a POS basket in one round trip: the products asked for by id or barcode, each
// with its price and stock, and the ids and barcodes that matched nothing.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) error {
	s.setDataAge(w, cloudapi.Products, cloudapi.Prices, cloudapi.Stock)
	var req lookupRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if msg := checkLookup(&req); msg != "" {
		return refuse(probInvalidBody, msg)
	}
	ctx := r.Context()
	ids := distinct(req.IDs)
	codes := distinct(req.Barcodes)

	byID := make(map[string]storage.Item, len(ids)+len(codes))
	found, err := s.o.DB.GetMany(ctx, cloudapi.Products, ids)
	if err != nil {
		return fmt.Errorf("look up products: %w", err)
	}
	direct := make(map[string]bool, len(found))
	for _, it := range found {
		byID[it.ID] = it
		direct[it.ID] = true
	}
	byCode := make(map[string]string, len(codes))
	for _, code := range codes {
		it, err := s.o.DB.ProductByBarcode(ctx, code)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("look up barcode: %w", err)
		}
		byID[it.ID] = it
		byCode[code] = it.ID
	}
	productIDs := make([]string, 0, len(byID))
	for id := range byID {
		productIDs = append(productIDs, id)
	}
	prices, err := s.docs(r, cloudapi.Prices, productIDs)
	if err != nil {
		return fmt.Errorf("look up prices: %w", err)
	}
	stock, err := s.docs(r, cloudapi.Stock, productIDs)
	if err != nil {
		return fmt.Errorf("look up stock: %w", err)
	}

	resp := lookupResponse{Items: []lookupItem{}, Missing: []string{}}
	add := func(id, code string) {
		resp.Items = append(resp.Items, lookupItem{ID: id, Barcode: code, Product: byID[id].Doc, Price: prices[id], Stock: stock[id]})
	}
	for _, id := range ids {
		if direct[id] {
			add(id, "")
			continue
		}
		resp.Missing = append(resp.Missing, id)
	}
	for _, code := range codes {
		if id, ok := byCode[code]; ok {
			add(id, code)
			continue
		}
		resp.Missing = append(resp.Missing, code)
	}
	return writeJSON(w, http.StatusOK, resp)
}

// docs returns the documents of a collection for ids, by id.
func (s *Server) docs(r *http.Request, collection string, ids []string) (map[string]json.RawMessage, error) {
	items, err := s.o.DB.GetMany(r.Context(), collection, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(items))
	for _, it := range items {
		out[it.ID] = it.Doc
	}
	return out, nil
}

// checkLookup returns what is wrong with a decoded lookup request, or "".
func checkLookup(req *lookupRequest) string {
	if len(req.IDs)+len(req.Barcodes) == 0 {
		return `give at least one entry in "ids" or "barcodes"`
	}
	for _, l := range []struct {
		field string
		keys  []string
	}{{"ids", req.IDs}, {"barcodes", req.Barcodes}} {
		if len(l.keys) > maxLookupKeys {
			return fmt.Sprintf("%q has %d entries; at most %d per request", l.field, len(l.keys), maxLookupKeys)
		}
		for i, k := range l.keys {
			if why := checkKey(k); why != "" {
				return fmt.Sprintf("%s[%d]: %s", l.field, i, why)
			}
		}
	}
	return ""
}

// checkKey applies the contract's rule for ids to an id or barcode asked for: anything else
// cannot be in the catalog and is most likely a device's bug.
func checkKey(k string) string {
	switch {
	case k == "":
		return "empty"
	case len(k) > cloudapi.MaxIDBytes:
		return fmt.Sprintf("longer than %d bytes", cloudapi.MaxIDBytes)
	case !utf8.ValidString(k):
		return "not valid UTF-8"
	case strings.ContainsFunc(k, unicode.IsControl): // C0, DEL and C1, as cloudapi.ValidateID
		return "contains a control character"
	}
	return ""
}

// distinct returns keys without repeats, in first-seen order.
func distinct(keys []string) []string {
	seen := make(map[string]bool, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// decodeBody reads a strict JSON request body into v; its error is the refusal to answer when the
// body is not acceptable.
func decodeBody(r *http.Request, v any) error {
	if err := jsonContentType(r); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeOptionalBody is decodeBody for a route whose body may be left out: no body, or an empty
// one (chunked included), leaves v as it is, whatever its Content-Type.
func decodeOptionalBody(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil || len(body) == 0 {
		return err
	}
	if err := jsonContentType(r); err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// jsonContentType refuses a body not sent as application/json.
func jsonContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		if ct == "" {
			ct = "none"
		}
		return refuse(probUnsupportedMediaType, "the body must be JSON sent with Content-Type: application/json, not "+ct)
	}
	return nil
}

// readBody reads the body whole (limitBody bounds it), so that it can be checked to be UTF-8,
// as JSON must be: the decoder would replace each bad byte with U+FFFD and store what nobody
// sent. A body that does not arrive whole is no malformed JSON: the refusal says so, without
// the connection's addresses.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return body, nil
	case errors.As(err, &tooBig):
		return nil, refuse(probBodyTooLarge, tooLarge(tooBig.Limit))
	}
	return nil, refuse(probMalformedRequest, "the body did not arrive whole: the connection stalled past lan.read_timeout, or was cut, before its end")
}

// decodeJSON decodes a body read whole into v, strictly.
func decodeJSON(body []byte, v any) error {
	err := strictjson.Decode(body, v)
	var notUTF8 *strictjson.InvalidUTF8Error
	switch {
	case errors.As(err, &notUTF8):
		return refuse(probMalformedBody, fmt.Sprintf("the body is not valid UTF-8: byte 0x%02x at offset %d; JSON text must be UTF-8", notUTF8.Byte, notUTF8.Offset))
	}
	if err != nil {
		return refuse(probMalformedBody, decodeProblem(err))
	}
	return nil
}

// decodeProblem says what is wrong with a body in words a device maker can act on.
func decodeProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("syntax error at offset %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("wrong type for field %q: got a JSON %s, want %s", typ.Field, typ.Value, jsonKind(typ.Type.String()))
	case errors.As(err, &typ):
		return fmt.Sprintf("the body is a JSON %s; want an object", typ.Value)
	case errors.Is(err, io.EOF):
		return "the body is empty; want a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends before the JSON object is complete"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names a Go type the way a JSON author thinks of it.
func jsonKind(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "[]string":
		return "an array of strings"
	}
	return goType
}
