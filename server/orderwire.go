package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/storeedge/storeedge/orders"
)

// maxKeyBytes is the longest Idempotency-Key.
const maxKeyBytes = 128

// createOrderRequest is the body of POST /api/v1/orders.
type createOrderRequest struct {
	Lines    []orders.Wanted  `json:"lines"`
	Note     string           `json:"note"`
	Customer *orders.Customer `json:"customer"`
}

// statusRequest is the body of POST /api/v1/orders/{id}/status.
type statusRequest struct {
	Status string `json:"status"`
	Note   string `json:"note"`
}

// checkOrderRequest returns what is wrong with a create request, or "".
func checkOrderRequest(req *createOrderRequest) string {
	if msg := orders.CheckLineCount(len(req.Lines)); msg != "" {
		return msg
	}
	for i, l := range req.Lines {
		if msg := orders.CheckLine(i, l.ProductID, l.Quantity); msg != "" {
			return msg
		}
	}
	return orders.CheckDetails(req.Note, req.Customer)
}

// checkToken checks a header value used as an identifier: 1..128 visible ASCII characters.
func checkToken(name, v string) string {
	if v == "" {
		return "the " + name + " header is required"
	}
	if len(v) > maxKeyBytes {
		return fmt.Sprintf("the %s header is %d bytes, at most %d", name, len(v), maxKeyBytes)
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return "the " + name + " header must be visible ASCII characters"
		}
	}
	return ""
}

// requestHash fingerprints a create request, so a retry under the same idempotency key can be
// told from a different order reusing it.
func requestHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}
