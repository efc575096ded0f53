package server

import (
	"encoding/json"
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
		r.Post("/api/v1/orders", s.handle(s.createOrder))
		r.Get("/api/v1/orders", s.handle(s.listOrders))
		r.Get("/api/v1/orders/{id}", s.handle(s.getOrder))
		r.Post("/api/v1/orders/{id}/status", s.handle(s.setOrderStatus))
	})
}

// orderAnswer is an order with its life so far.
type orderAnswer struct {
	Order  storage.Order         `json:"order"`
	Ledger []storage.LedgerEntry `json:"ledger"`
}

// createOrder stores a device's order, priced from the shop's own catalog. The device's
// Idempotency-Key makes a retried POST return the order it already made.
func (s *Server) createOrder(w http.ResponseWriter, r *http.Request) error {
	// The order is the authenticated device's: its idempotency keys are its own.
	device := deviceID(r.Context())
	key := r.Header.Get(headerIdempotencyKey)
	if msg := checkToken(headerIdempotencyKey, key); msg != "" {
		return refuse(probBadParameter, msg+": send a new unique key (e.g. a UUID) with each new order and the same key when retrying it")
	}
	var req createOrderRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if msg := checkOrderRequest(&req); msg != "" {
		return refuse(probInvalidBody, msg)
	}
	canonical, _ := json.Marshal(req)
	o, err := s.priceOrder(r, &req)
	if err != nil {
		return fmt.Errorf("price order: %w", err)
	}
	o.Source = storage.SourceLAN
	o.DeviceID = device
	o.Status = storage.StatusNew
	o.Test = s.o.TestMode
	stored, created, err := s.o.DB.CreateOrder(r.Context(), storage.NewOrder{Order: o, IdempotencyKey: key, RequestHash: requestHash(canonical)})
	if err != nil {
		return fmt.Errorf("store order: %w", err)
	}
	w.Header().Set("Location", "/api/v1/orders/"+stored.ID)
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
		w.Header().Set(headerReplayed, "true")
	}
	return s.writeOrder(w, r, status, stored)
}

// priceOrder builds an order from a request with the names and prices of the local catalog. It
// refuses an order that names what the shop does not sell.
func (s *Server) priceOrder(r *http.Request, req *createOrderRequest) (o storage.Order, err error) {
	ids := make([]string, 0, len(req.Lines))
	for _, l := range req.Lines {
		ids = append(ids, l.ProductID)
	}
	ids = distinct(ids)
	products, err := s.docs(r, cloudapi.Products, ids)
	if err != nil {
		return o, err
	}
	prices, err := s.docs(r, cloudapi.Prices, ids)
	if err != nil {
		return o, err
	}
	o.Note, o.Customer = req.Note, req.Customer
	for i, l := range req.Lines {
		var p cloudapi.Product
		var price cloudapi.Price
		if json.Unmarshal(products[l.ProductID], &p) != nil {
			return o, refuse(probUnknownProduct, fmt.Sprintf("lines[%d].product_id: no product %q in the catalog", i, l.ProductID))
		}
		if json.Unmarshal(prices[l.ProductID], &price) != nil {
			return o, refuse(probUnknownProduct, fmt.Sprintf("lines[%d].product_id: product %q has no price", i, l.ProductID))
		}
		if o.Currency == "" {
			o.Currency = price.Currency
		} else if o.Currency != price.Currency {
			return o, refuse(probUnknownProduct, fmt.Sprintf("lines[%d]: priced in %s, the order in %s; one order has one currency", i, price.Currency, o.Currency))
		}
		line := storage.OrderLine{ProductID: l.ProductID, Name: p.Name, Quantity: l.Quantity, UnitPrice: price.Amount, LineTotal: price.Amount * l.Quantity}
		o.Lines = append(o.Lines, line)
		o.Total += line.LineTotal
	}
	return o, nil
}

func (s *Server) writeOrder(w http.ResponseWriter, r *http.Request, status int, o storage.Order) error {
	ledger, err := s.o.DB.OrderLedger(r.Context(), o.ID)
	if err != nil {
		return fmt.Errorf("read order ledger: %w", err)
	}
	return writeJSON(w, status, orderAnswer{Order: o, Ledger: ledger})
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) error {
	id, _ := pathParam(r, "id")
	o, err := s.o.DB.GetOrder(r.Context(), id)
	if err != nil {
		return whenMissing(fmt.Errorf("read order: %w", err), "no order "+strconv.Quote(id))
	}
	return s.writeOrder(w, r, http.StatusOK, o)
}

// listOrders pages through orders, newest first.
func (s *Server) listOrders(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	status := q.Get("status")
	if status != "" && !storage.ValidStatus(status) {
		return refuse(probBadParameter, "status: "+strconv.Quote(status)+" is not one of new, accepted, preparing, ready, completed, cancelled")
	}
	orders, err := s.o.DB.ListOrders(r.Context(), storage.OrderFilter{Status: status, Before: q.Get("before"), Limit: limit + 1})
	if err != nil {
		return fmt.Errorf("list orders: %w", err)
	}
	resp := struct {
		Items []storage.Order `json:"items"`
		Next  string          `json:"next,omitempty"`
	}{Items: orders}
	if len(orders) > limit {
		resp.Items = orders[:limit]
		resp.Next = orders[limit-1].ID
	}
	return writeJSON(w, http.StatusOK, resp)
}

// setOrderStatus moves an order to a new status. Asking for the status it has already is a
// harmless no-op, so a device may retry.
func (s *Server) setOrderStatus(w http.ResponseWriter, r *http.Request) error {
	id, _ := pathParam(r, "id")
	var req statusRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !storage.ValidStatus(req.Status) {
		return refuse(probInvalidBody, "status: "+strconv.Quote(req.Status)+" is not one of new, accepted, preparing, ready, completed, cancelled")
	}
	if msg := checkText("note", req.Note, maxNoteRunes); msg != "" {
		return refuse(probInvalidBody, msg)
	}
	o, _, err := s.o.DB.UpdateOrder(r.Context(), id, func(o *storage.Order) error {
		if !storage.CanMove(o.Status, req.Status) {
			return &transitionError{from: o.Status, to: req.Status}
		}
		o.Status = req.Status
		if req.Note != "" && !strings.Contains(o.Note, req.Note) {
			o.Note = strings.TrimSpace(o.Note + "\n" + req.Note)
		}
		return nil
	})
	if err != nil {
		return whenMissing(fmt.Errorf("update order: %w", err), "no order "+strconv.Quote(id))
	}
	return s.writeOrder(w, r, http.StatusOK, o)
}
