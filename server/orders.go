package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Headers of the orders service.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
)

var (
	probIdempotencyConflict = problemType{"idempotency-conflict", "Idempotency key reused", http.StatusConflict}
	probInvalidTransition   = problemType{"invalid-transition", "Order status cannot change that way", http.StatusConflict}
	probUnknownProduct      = problemType{"unknown-product", "Order refers to what the shop does not sell", http.StatusUnprocessableEntity}
)

// transitionError refuses a status change that the order's statuses do not allow.
type transitionError struct{ from, to string }

func (e *transitionError) Error() string {
	return fmt.Sprintf("the order is %s and cannot become %s", e.from, e.to)
}

// ordersRoutes are the orders service: devices create orders, list and follow them, and move
// them through their statuses.
func (s *Server) ordersRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(noStore)
		r.Post("/api/v1/orders", s.createOrder)
		r.Get("/api/v1/orders", s.listOrders)
		r.Get("/api/v1/orders/{id}", s.getOrder)
		r.Post("/api/v1/orders/{id}/status", s.setOrderStatus)
	})
}

// orderAnswer is an order with its life so far.
type orderAnswer struct {
	Order  storage.Order         `json:"order"`
	Ledger []storage.LedgerEntry `json:"ledger"`
}

// createOrder stores a device's order, priced from the shop's own catalog. The device's
// Idempotency-Key makes a retried POST return the order it already made.
func (s *Server) createOrder(w http.ResponseWriter, r *http.Request) {
	// The order is the authenticated device's: its idempotency keys are its own.
	device := deviceID(r.Context())
	key := r.Header.Get(headerIdempotencyKey)
	if msg := checkToken(headerIdempotencyKey, key); msg != "" {
		problem(w, r, probBadParameter, msg+": send a new unique key (e.g. a UUID) with each new order and the same key when retrying it")
		return
	}
	var req createOrderRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	if msg := checkOrderRequest(&req); msg != "" {
		problem(w, r, probInvalidBody, msg)
		return
	}
	canonical, _ := json.Marshal(req)
	o, msg, err := s.priceOrder(r, &req)
	if err != nil {
		s.internal(w, r, "price order", err)
		return
	}
	if msg != "" {
		problem(w, r, probUnknownProduct, msg)
		return
	}
	o.Source = storage.SourceLAN
	o.DeviceID = device
	o.Status = storage.StatusNew
	o.Test = s.o.TestMode
	stored, created, err := s.o.DB.CreateOrder(r.Context(), storage.NewOrder{Order: o, IdempotencyKey: key, RequestHash: requestHash(canonical)})
	if errors.Is(err, storage.ErrIdempotencyConflict) {
		problem(w, r, probIdempotencyConflict, "this Idempotency-Key was already used by this device for a different order; use a new key for a new order")
		return
	}
	if err != nil {
		s.internal(w, r, "store order", err)
		return
	}
	w.Header().Set("Location", "/api/v1/orders/"+stored.ID)
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
		w.Header().Set(headerReplayed, "true")
	}
	s.writeOrder(w, r, status, stored)
}

// priceOrder builds an order from a request with the names and prices of the local catalog. msg
// says what the shop does not know, when the order cannot be priced.
func (s *Server) priceOrder(r *http.Request, req *createOrderRequest) (o storage.Order, msg string, err error) {
	ids := make([]string, 0, len(req.Lines))
	for _, l := range req.Lines {
		ids = append(ids, l.ProductID)
	}
	ids = distinct(ids)
	products, err := s.docs(r, cloudapi.Products, ids)
	if err != nil {
		return o, "", err
	}
	prices, err := s.docs(r, cloudapi.Prices, ids)
	if err != nil {
		return o, "", err
	}
	o.Note, o.Customer = req.Note, req.Customer
	for i, l := range req.Lines {
		var p cloudapi.Product
		var price cloudapi.Price
		if json.Unmarshal(products[l.ProductID], &p) != nil {
			return o, fmt.Sprintf("lines[%d].product_id: no product %q in the catalog", i, l.ProductID), nil
		}
		if json.Unmarshal(prices[l.ProductID], &price) != nil {
			return o, fmt.Sprintf("lines[%d].product_id: product %q has no price", i, l.ProductID), nil
		}
		if o.Currency == "" {
			o.Currency = price.Currency
		} else if o.Currency != price.Currency {
			return o, fmt.Sprintf("lines[%d]: priced in %s, the order in %s; one order has one currency", i, price.Currency, o.Currency), nil
		}
		line := storage.OrderLine{ProductID: l.ProductID, Name: p.Name, Quantity: l.Quantity, UnitPrice: price.Amount, LineTotal: price.Amount * l.Quantity}
		o.Lines = append(o.Lines, line)
		o.Total += line.LineTotal
	}
	return o, "", nil
}

func (s *Server) writeOrder(w http.ResponseWriter, r *http.Request, status int, o storage.Order) {
	ledger, err := s.o.DB.OrderLedger(r.Context(), o.ID)
	if err != nil {
		s.internal(w, r, "read order ledger", err)
		return
	}
	s.writeJSON(w, r, status, orderAnswer{Order: o, Ledger: ledger})
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	id, _ := pathParam(r, "id")
	o, err := s.o.DB.GetOrder(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		problem(w, r, probNotFound, "no order "+strconv.Quote(id))
		return
	}
	if err != nil {
		s.internal(w, r, "read order", err)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

// listOrders pages through orders, newest first.
func (s *Server) listOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, bad := limitParam(q)
	if bad != nil {
		s.answerError(w, r, bad)
		return
	}
	status := q.Get("status")
	if status != "" && !storage.ValidStatus(status) {
		problem(w, r, probBadParameter, "status: "+strconv.Quote(status)+" is not one of new, accepted, preparing, ready, completed, cancelled")
		return
	}
	orders, err := s.o.DB.ListOrders(r.Context(), storage.OrderFilter{Status: status, Before: q.Get("before"), Limit: limit + 1})
	if err != nil {
		s.internal(w, r, "list orders", err)
		return
	}
	resp := struct {
		Items []storage.Order `json:"items"`
		Next  string          `json:"next,omitempty"`
	}{Items: orders}
	if len(orders) > limit {
		resp.Items = orders[:limit]
		resp.Next = orders[limit-1].ID
	}
	s.writeJSON(w, r, http.StatusOK, resp)
}

// setOrderStatus moves an order to a new status. Asking for the status it has already is a
// harmless no-op, so a device may retry.
func (s *Server) setOrderStatus(w http.ResponseWriter, r *http.Request) {
	id, _ := pathParam(r, "id")
	var req statusRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	if !storage.ValidStatus(req.Status) {
		problem(w, r, probInvalidBody, "status: "+strconv.Quote(req.Status)+" is not one of new, accepted, preparing, ready, completed, cancelled")
		return
	}
	if msg := checkText("note", req.Note, maxNoteRunes); msg != "" {
		problem(w, r, probInvalidBody, msg)
		return
	}
	var from string
	errMove := errors.New("invalid transition")
	o, _, err := s.o.DB.UpdateOrder(r.Context(), id, func(o *storage.Order) error {
		from = o.Status
		if !storage.CanMove(o.Status, req.Status) {
			return errMove
		}
		o.Status = req.Status
		if req.Note != "" && !strings.Contains(o.Note, req.Note) {
			o.Note = strings.TrimSpace(o.Note + "\n" + req.Note)
		}
		return nil
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		problem(w, r, probNotFound, "no order "+strconv.Quote(id))
	case errors.Is(err, errMove):
		problem(w, r, probInvalidTransition, fmt.Sprintf("the order is %s and cannot become %s", from, req.Status))
	case err != nil:
		s.internal(w, r, "update order", err)
	default:
		s.writeOrder(w, r, http.StatusOK, o)
	}
}
