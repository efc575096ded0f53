package storage

import (
	"context"
	"fmt"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// GetMany answers the same whether it looks a few ids up one by one or many in one query: live
// items only, in id order, each once.
func TestGetManyFewAndMany(t *testing.T) {
	db := openTest(t)
	var changes []cloudapi.Change
	for i := range 20 {
		changes = append(changes, product(fmt.Sprintf("P%02d", i), 1, fmt.Sprint("Item ", i), "c"))
	}
	apply(t, db, cloudapi.Products, "c1", changes...)
	apply(t, db, cloudapi.Products, "c2", del(cloudapi.Products, "P03", 2))
	ids := func(items []Item) string {
		s := ""
		for _, it := range items {
			s += it.ID + " "
		}
		return s
	}
	few, err := db.GetMany(context.Background(), cloudapi.Products, []string{"P05", "P03", "NOPE", "P01", "P05"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(few); got != "P01 P05 " {
		t.Fatalf("few: %q", got)
	}
	many, err := db.GetMany(context.Background(), cloudapi.Products, []string{"P05", "P03", "NOPE", "P01", "P05", "P10", "P11", "P12", "P13", "P14"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(many); got != "P01 P05 P10 P11 P12 P13 P14 " {
		t.Fatalf("many: %q", got)
	}
	if string(few[1].Doc) != string(many[1].Doc) || few[1].Rev != many[1].Rev || few[1].Seq != many[1].Seq {
		t.Fatalf("the same item read two ways differs: %+v, %+v", few[1], many[1])
	}
}
