package syncbench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// batcher writes one collection's changes with plain prepared statements, baselineBatch rows per
// transaction: the baseline's whole write path.
type batcher struct {
	ctx                  context.Context
	db                   *sql.DB
	products             bool // the collection is products: columns of their own, and barcodes
	upsertSQL, deleteSQL string

	tx                  *sql.Tx // nil between transactions
	upsert, del, addBar *sql.Stmt
	inTx                int
}

// The products' barcode index: one row per code.
const codeSQL = `INSERT OR REPLACE INTO barcodes(code, product_id) VALUES (?, ?)`

func newBatcher(ctx context.Context, db *sql.DB, coll string) *batcher {
	b := &batcher{ctx: ctx, db: db, products: coll == cloudapi.Products}
	if b.products {
		b.upsertSQL = `INSERT INTO products(id, rev, seq, deleted, name, brand, category, doc) VALUES (?, ?, ?, 0, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 0, name = excluded.name,
			brand = excluded.brand, category = excluded.category, doc = excluded.doc WHERE excluded.rev > products.rev`
		b.deleteSQL = `INSERT INTO products(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 1, NULL)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 1, name = '', brand = '', category = '', doc = NULL
			WHERE excluded.rev > products.rev`
	} else {
		b.upsertSQL = `INSERT INTO ` + coll + `(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 0, ?)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 0, doc = excluded.doc WHERE excluded.rev > ` + coll + `.rev`
		b.deleteSQL = `INSERT INTO ` + coll + `(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 1, NULL)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 1, doc = NULL WHERE excluded.rev > ` + coll + `.rev`
	}
	return b
}

// add writes one change with the next seq, beginning and committing transactions as needed.
func (b *batcher) add(c *cloudapi.Change, seq *int64) error {
	if b.tx == nil {
		if err := b.begin(); err != nil {
			return err
		}
	}
	*seq++
	if err := b.apply(c, *seq); err != nil {
		return err
	}
	if b.inTx++; b.inTx == baselineBatch {
		return b.commit()
	}
	return nil
}

func (b *batcher) begin() error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	var err error
	if b.tx, err = b.db.BeginTx(b.ctx, nil); err != nil {
		return err
	}
	if b.upsert, err = b.tx.PrepareContext(b.ctx, b.upsertSQL); err != nil {
		return err
	}
	if b.del, err = b.tx.PrepareContext(b.ctx, b.deleteSQL); err != nil {
		return err
	}
	if b.products {
		if b.addBar, err = b.tx.PrepareContext(b.ctx, codeSQL); err != nil {
			return err
		}
	}
	return nil
}

// apply runs the statements of one change.
func (b *batcher) apply(c *cloudapi.Change, seq int64) error {
	var err error
	switch {
	case c.Op == cloudapi.OpDelete:
		_, err = b.del.ExecContext(b.ctx, c.ID, c.Rev, seq)
	case b.products:
		var p cloudapi.Product
		if err := json.Unmarshal(c.Doc, &p); err != nil {
			return fmt.Errorf("%s: %w", c.ID, err)
		}
		if _, err = b.upsert.ExecContext(b.ctx, c.ID, c.Rev, seq, p.Name, p.Brand, p.Category, string(c.Doc)); err != nil {
			break
		}
		for _, code := range p.Barcodes {
			if _, err = b.addBar.ExecContext(b.ctx, code, c.ID); err != nil {
				break
			}
		}
	default:
		_, err = b.upsert.ExecContext(b.ctx, c.ID, c.Rev, seq, string(c.Doc))
	}
	if err != nil {
		return fmt.Errorf("%s rev %d: %w", c.ID, c.Rev, err)
	}
	return nil
}

// commit ends the open transaction; it closes the transaction's statements.
func (b *batcher) commit() error {
	b.inTx = 0
	err := b.tx.Commit()
	b.tx = nil
	return err
}

// flush commits what is left.
func (b *batcher) flush() error {
	if b.tx == nil {
		return nil
	}
	return b.commit()
}

// rollback abandons an open transaction after a failure.
func (b *batcher) rollback() {
	if b.tx != nil {
		b.tx.Rollback()
	}
}
