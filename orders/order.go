package orders

import "time"

// Where an order comes from.
const (
	SourceLAN        = "lan"        // a device in the shop
	SourceServiceBus = "servicebus" // the cloud's order queue
)

// Events an order announces to devices and to the cloud.
const (
	EventCreated = "order.created"
	EventUpdated = "order.updated"
)

// Line is one product line of an order. Prices are in minor units.
type Line struct {
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
	LineTotal int64  `json:"line_total"`
}

// NewLine is a line of qty units at unit each.
func NewLine(productID, name string, qty, unit int64) Line {
	return Line{ProductID: productID, Name: name, Quantity: qty, UnitPrice: unit, LineTotal: qty * unit}
}

// Customer is who the order is for, when known.
type Customer struct {
	Name  string `json:"name,omitempty"`
	Phone string `json:"phone,omitempty"`
	Email string `json:"email,omitempty"`
}

// Known is c, or nil when c says nothing ("customer": {} from a device): a customer with no
// name, phone or e-mail is no known customer, and is kept and exported as none.
func (c *Customer) Known() *Customer {
	if c == nil || *c == (Customer{}) {
		return nil
	}
	return c
}

// Order is an order as the shop keeps it.
type Order struct {
	ID         string    `json:"id"`
	Number     int64     `json:"number"`
	Source     string    `json:"source"`
	DeviceID   string    `json:"device_id,omitempty"`
	ExternalID string    `json:"external_id,omitempty"`
	Status     string    `json:"status"`
	Test       bool      `json:"test"`
	Note       string    `json:"note,omitempty"`
	Currency   string    `json:"currency"`
	Lines      []Line    `json:"lines"`
	Total      int64     `json:"total"`
	Customer   *Customer `json:"customer,omitempty"`
	Version    int64     `json:"version"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Sum is what the lines add up to.
func Sum(lines []Line) int64 {
	var total int64
	for _, l := range lines {
		total += l.LineTotal
	}
	return total
}
