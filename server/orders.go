package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/orders"
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
	Order  orders.Order         `json:"order"`
	Ledger []orders.LedgerEntry `json:"ledger"`
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
	// A customer with none of its fields is none (openapi.yaml): a retry that leaves an empty one
	// out is the same order. A key stored by an earlier version, which hashed it as sent, matches
	// too (before).
	var before string
	if req.Customer != nil && req.Customer.Known() == nil {
		sent, _ := json.Marshal(req)
		before = requestHash(sent)
		req.Customer = nil
	}
	canonical, _ := json.Marshal(req)
	hash := requestHash(canonical)
	o, err := s.priceOrder(r, &req)
	if err != nil {
		// A retry of an order the catalog can no longer price (a product left it since) still
		// gets the order made the first time; only then is the key looked up before storing.
		stored, found, lerr := s.o.DB.OrderByIdempotencyKey(r.Context(), device, key, hash, before)
		switch {
		case lerr != nil:
			return fmt.Errorf("look the order up: %w", lerr)
		case found:
			return s.replayOrder(w, r, stored)
		}
		return fmt.Errorf("price order: %w", err)
	}
	o.Source = orders.SourceLAN
	o.DeviceID = device
	o.Status = orders.StatusNew
	o.Test = s.o.TestMode
	stored, created, err := s.o.DB.CreateOrder(r.Context(), storage.NewOrder{Order: o, IdempotencyKey: key, RequestHash: hash, RequestHashBefore: before})
	if err != nil {
		return fmt.Errorf("store order: %w", err)
	}
	if !created {
		return s.replayOrder(w, r, stored)
	}
	w.Header().Set("Location", "/api/v1/orders/"+stored.ID)
	return s.writeOrder(w, r, http.StatusCreated, stored)
}

// replayOrder answers a retried POST with the order its key made the first time.
func (s *Server) replayOrder(w http.ResponseWriter, r *http.Request, stored orders.Order) error {
	w.Header().Set("Location", "/api/v1/orders/"+stored.ID)
	w.Header().Set(headerReplayed, "true")
	return s.writeOrder(w, r, http.StatusOK, stored)
}

// priceOrder builds an order from a request with the names and prices of the local catalog. It
// refuses an order that names what the shop does not sell.
func (s *Server) priceOrder(r *http.Request, req *createOrderRequest) (orders.Order, error) {
	ids := make([]string, 0, len(req.Lines))
	for _, l := range req.Lines {
		ids = append(ids, l.ProductID)
	}
	ids = distinct(ids)
	products, err := s.docs(r, cloudapi.Products, ids)
	if err != nil {
		return orders.Order{}, err
	}
	prices, err := s.docs(r, cloudapi.Prices, ids)
	if err != nil {
		return orders.Order{}, err
	}
	offers := make(map[string]orders.Offer, len(ids))
	for _, id := range ids {
		var p cloudapi.Product
		var price cloudapi.Price
		if json.Unmarshal(products[id], &p) != nil {
			continue
		}
		offer := orders.Offer{Name: p.Name}
		if json.Unmarshal(prices[id], &price) == nil {
			offer.Priced, offer.Amount, offer.Currency = true, price.Amount, price.Currency
		}
		offers[id] = offer
	}
	o, err := orders.Price(req.Lines, offers)
	o.Note, o.Customer = req.Note, req.Customer
	return o, err
}

func (s *Server) writeOrder(w http.ResponseWriter, r *http.Request, status int, o orders.Order) error {
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

// validOrderID reports whether id has the form of the ids the shop gives orders: a UUID in its
// canonical form, lower case.
func validOrderID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// listOrders pages through orders, newest first.
func (s *Server) listOrders(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "limit", "status", "after", "before")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	status := q.Get("status")
	if status != "" && !orders.ValidStatus(status) {
		return refuse(probBadParameter, "status: "+strconv.Quote(status)+" is not one of "+orders.StatusList())
	}
	// Orders page backwards, newest first: a client that follows the catalog's lists and passes
	// next as after would get the first page again and again.
	if q.Get("after") != "" {
		return refuse(probBadParameter, "after: orders are listed newest first; pass the next of the previous page as before")
	}
	before := q.Get("before") // absent or empty: the first page
	if before != "" && !validOrderID(before) {
		return refuse(probBadParameter, "before: "+strconv.Quote(clip.String(before, 64))+" is not an order id (the next of the previous page)")
	}
	page, err := s.o.DB.ListOrders(r.Context(), storage.OrderFilter{Status: status, Before: before, Limit: limit + 1})
	if err != nil {
		return fmt.Errorf("list orders: %w", err)
	}
	resp := struct {
		Items []orders.Order `json:"items"`
		Next  string         `json:"next,omitempty"`
	}{Items: page}
	if len(page) > limit {
		resp.Items = page[:limit]
		resp.Next = page[limit-1].ID
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
	if !orders.ValidStatus(req.Status) {
		return refuse(probInvalidBody, "status: "+strconv.Quote(req.Status)+" is not one of "+orders.StatusList())
	}
	req.Note = strings.TrimSpace(req.Note) // as it is added (orders.Move): "Table 4\r\n" is "Table 4"
	if msg := orders.CheckText("note", req.Note, orders.MaxNoteRunes); msg != "" {
		return refuse(probInvalidBody, msg)
	}
	o, _, err := s.o.DB.UpdateOrder(r.Context(), id, func(o *orders.Order) error { return orders.Move(o, req.Status, req.Note) })
	if err != nil {
		return whenMissing(fmt.Errorf("update order: %w", err), "no order "+strconv.Quote(id))
	}
	return s.writeOrder(w, r, http.StatusOK, o)
}
