package orders

import (
	"errors"
	"fmt"
)

// Wanted is a line a device asks for: a product and how many.
type Wanted struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// Offer is what the shop's catalog says of a product: its name and, when it has one, its price.
type Offer struct {
	Name     string
	Priced   bool
	Amount   int64 // minor units
	Currency string
}

// ErrUnknownProduct is wrapped by a *PricingError.
var ErrUnknownProduct = errors.New("order names what the shop does not sell")

// PricingError refuses an order whose line names a product the catalog does not have, has no
// price for, prices beyond MaxUnitPrice, or prices in another currency than the order's other
// lines.
type PricingError struct {
	Line   int
	Reason string
}

func (e *PricingError) Error() string { return e.Reason }

func (e *PricingError) Unwrap() error { return ErrUnknownProduct }

// Price makes an order's lines, currency and total from what a device asks for and what the
// catalog offers (by product id). Names and prices are the catalog's, never the device's; one
// order has one currency.
func Price(wanted []Wanted, offers map[string]Offer) (o Order, err error) {
	for i, w := range wanted {
		offer, ok := offers[w.ProductID]
		switch {
		case !ok:
			return Order{}, &PricingError{i, fmt.Sprintf("lines[%d].product_id: no product %q in the catalog", i, w.ProductID)}
		case !offer.Priced:
			return Order{}, &PricingError{i, fmt.Sprintf("lines[%d].product_id: product %q has no price", i, w.ProductID)}
		case offer.Amount < 0 || offer.Amount > MaxUnitPrice:
			return Order{}, &PricingError{i, fmt.Sprintf("lines[%d].product_id: product %q is priced at %d, outside the 0 to %d minor units an order takes; the catalog's price is wrong", i, w.ProductID, offer.Amount, MaxUnitPrice)}
		case o.Currency != "" && o.Currency != offer.Currency:
			return Order{}, &PricingError{i, fmt.Sprintf("lines[%d]: priced in %s, the order in %s; one order has one currency", i, offer.Currency, o.Currency)}
		}
		o.Currency = offer.Currency
		o.Lines = append(o.Lines, NewLine(w.ProductID, LineName(offer.Name), w.Quantity, offer.Amount))
	}
	o.Total = Sum(o.Lines)
	return o, nil
}
