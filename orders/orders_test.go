package orders

import (
	"errors"
	"strings"
	"testing"
)

func TestTransitions(t *testing.T) {
	// Every pair of statuses: an order goes forward or stays, never back, and nothing leaves a
	// final status.
	rank := map[string]int{StatusNew: 0, StatusAccepted: 1, StatusPreparing: 2, StatusReady: 3, StatusCompleted: 4, StatusCancelled: 4}
	final := map[string]bool{StatusCompleted: true, StatusCancelled: true}
	for _, from := range statuses {
		for _, to := range statuses {
			want := from == to || !final[from] && rank[to] > rank[from]
			if got := CanMove(from, to); got != want {
				t.Errorf("CanMove(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	if CanMove(StatusNew, "shipped") || ValidStatus("shipped") || ValidStatus("") {
		t.Error("an unknown status is accepted")
	}
	if got := StatusList(); got != "new, accepted, preparing, ready, completed, cancelled" {
		t.Errorf("StatusList() = %q", got)
	}
}

func TestMove(t *testing.T) {
	o := Order{Status: StatusNew, Note: "no onions"}
	if err := Move(&o, StatusReady, "table 4"); err != nil || o.Status != StatusReady || o.Note != "no onions\ntable 4" {
		t.Fatalf("Move: %v, %+v", err, o)
	}
	// A retried change with the same note changes nothing.
	if err := Move(&o, StatusReady, "table 4"); err != nil || o.Note != "no onions\ntable 4" {
		t.Fatalf("retried Move: %v, %+v", err, o)
	}
	err := Move(&o, StatusAccepted, "back")
	var te *TransitionError
	if !errors.As(err, &te) || !errors.Is(err, ErrInvalidTransition) || err.Error() != "the order is ready and cannot become accepted" {
		t.Fatalf("going back: %v", err)
	}
	if o.Status != StatusReady || strings.Contains(o.Note, "back") {
		t.Fatalf("a refused move changed the order: %+v", o)
	}
}

func TestPrice(t *testing.T) {
	offers := map[string]Offer{
		"tea":   {Name: "Tea", Priced: true, Amount: 250, Currency: "EUR"},
		"cake":  {Name: "Cake", Priced: true, Amount: 300, Currency: "EUR"},
		"free":  {Name: "Sample", Priced: true, Amount: 0, Currency: "EUR"},
		"dusd":  {Name: "Donut", Priced: true, Amount: 120, Currency: "USD"},
		"nopri": {Name: "Mystery"},
		"gold":  {Name: "Gold", Priced: true, Amount: 1 << 62, Currency: "EUR"},
		"dear":  {Name: "Dear", Priced: true, Amount: MaxUnitPrice, Currency: "EUR"},
	}
	o, err := Price([]Wanted{{"tea", 2}, {"cake", 1}, {"free", 3}}, offers)
	if err != nil {
		t.Fatal(err)
	}
	want := []Line{{"tea", "Tea", 2, 250, 500}, {"cake", "Cake", 1, 300, 300}, {"free", "Sample", 3, 0, 0}}
	if o.Currency != "EUR" || o.Total != 800 || len(o.Lines) != 3 {
		t.Fatalf("priced %+v", o)
	}
	for i := range want {
		if o.Lines[i] != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, o.Lines[i], want[i])
		}
	}
	for _, tc := range []struct {
		wanted []Wanted
		reason string
	}{
		{[]Wanted{{"tea", 1}, {"ghost", 1}}, `lines[1].product_id: no product "ghost" in the catalog`},
		{[]Wanted{{"nopri", 1}}, `lines[0].product_id: product "nopri" has no price`},
		{[]Wanted{{"tea", 1}, {"dusd", 1}}, "lines[1]: priced in USD, the order in EUR; one order has one currency"},
		// 3 × 2^62 overflowed into a negative total before the bound.
		{[]Wanted{{"gold", 3}}, `lines[0].product_id: product "gold" is priced at 4611686018427387904, outside the 0 to 1000000000000 minor units an order takes; the catalog's price is wrong`},
	} {
		_, err := Price(tc.wanted, offers)
		var pe *PricingError
		if !errors.As(err, &pe) || !errors.Is(err, ErrUnknownProduct) || err.Error() != tc.reason {
			t.Errorf("Price(%v) = %v, want %q", tc.wanted, err, tc.reason)
		}
	}
}

// The dearest order there can be stays far from overflowing.
func TestDearestOrder(t *testing.T) {
	offers := map[string]Offer{"dear": {Name: "Dear", Priced: true, Amount: MaxUnitPrice, Currency: "EUR"}}
	wanted := make([]Wanted, MaxLines)
	for i := range wanted {
		wanted[i] = Wanted{"dear", MaxQuantity}
	}
	o, err := Price(wanted, offers)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(MaxLines) * MaxQuantity * MaxUnitPrice; o.Total != want || o.Total <= 0 {
		t.Errorf("total %d, want %d", o.Total, want)
	}
}

// A catalog name goes on a line cut to 200 characters, without control characters.
func TestLineName(t *testing.T) {
	long := strings.Repeat("é", MaxNameRunes+50)
	if got := LineName(long); got != strings.Repeat("é", MaxNameRunes) {
		t.Errorf("a name of %d characters became %d", MaxNameRunes+50, len([]rune(got)))
	}
	if got := LineName("Tea\nbox\x00\xff"); got != "Tea box " {
		t.Errorf("LineName = %q", got)
	}
	if msg := CheckText("name", LineName("a\tb\x7f"+long), MaxNameRunes); msg != "" {
		t.Errorf("a line name breaks the rules of a name: %s", msg)
	}
	o, err := Price([]Wanted{{"p", 1}}, map[string]Offer{"p": {Name: long, Priced: true, Amount: 1, Currency: "EUR"}})
	if err != nil || o.Lines[0].Name != LineName(long) {
		t.Errorf("the priced line's name is %q (%v)", o.Lines[0].Name, err)
	}
}

func TestChecks(t *testing.T) {
	long := strings.Repeat("é", MaxNoteRunes+1)
	for _, tc := range []struct {
		name, got, want string
	}{
		{"no lines", CheckLineCount(0), "lines: an order needs at least one line"},
		{"too many lines", CheckLineCount(MaxLines + 1), "lines: 201 lines, at most 200"},
		{"lines ok", CheckLineCount(MaxLines), ""},
		{"empty product", CheckLine(2, "", 1), "lines[2].product_id: want 1 to 128 bytes of text"},
		{"long product", CheckLine(0, strings.Repeat("p", 129), 1), "lines[0].product_id: want 1 to 128 bytes of text"},
		{"bad UTF-8 product", CheckLine(0, "\xff", 1), "lines[0].product_id: want 1 to 128 bytes of text"},
		{"zero quantity", CheckLine(1, "P1", 0), "lines[1].quantity: 0, want 1 to 9999"},
		{"huge quantity", CheckLine(1, "P1", MaxQuantity+1), "lines[1].quantity: 10000, want 1 to 9999"},
		{"line ok", CheckLine(0, "P1", MaxQuantity), ""},
		{"long note", CheckDetails(long, nil), "note: 501 characters, at most 500"},
		{"control in note", CheckDetails("a\tb", nil), "note: contains control characters"},
		{"newline in note", CheckDetails("a\nb", nil), ""},
		{"bad UTF-8 note", CheckDetails("\xff", nil), "note: not valid UTF-8"},
		{"customer email", CheckDetails("", &Customer{Name: "Ana", Email: strings.Repeat("e", 201)}), "customer.email: 201 characters, at most 200"},
		{"customer ok", CheckDetails("", &Customer{Name: "Zoë"}), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
