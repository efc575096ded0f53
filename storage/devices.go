package storage

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/storeedge/storeedge/orders"
)

// Command states. A command is queued until written to its device, sent until the device
// acknowledges it; acknowledged, expired and failed are final.
const (
	CommandQueued       = "queued"
	CommandSent         = "sent"
	CommandAcknowledged = "acknowledged"
	CommandExpired      = "expired"
	CommandFailed       = "failed"
)

// Ways a device was paired.
const (
	PairedByCode       = "code"
	PairedByEnrollment = "enrollment"
)

// ErrPairingCode is returned by PairDevice when the code is unknown, expired or already used.
var ErrPairingCode = errors.New("storage: pairing code unknown, expired or already used")

// Device is a paired device as stored.
type Device struct {
	ID           string
	Kind         string
	Name         string
	AppVersion   string
	Address      string
	PushPort     int
	Capabilities []string
	SecretHash   []byte
	PushKey      []byte
	PairedAt     time.Time
	PairedBy     string
	LastSeen     time.Time // zero: never
	RevokedAt    time.Time // zero: not revoked
}

const deviceColumns = `id, kind, name, app_version, address, push_port, capabilities, secret_hash, push_key, paired_at, paired_by, last_seen, revoked_at`

func scanDevice(scan func(...any) error) (Device, error) {
	var d Device
	var caps string
	var paired, seen, revoked int64
	if err := scan(&d.ID, &d.Kind, &d.Name, &d.AppVersion, &d.Address, &d.PushPort, &caps, &d.SecretHash, &d.PushKey,
		&paired, &d.PairedBy, &seen, &revoked); err != nil {
		return d, err
	}
	if err := json.Unmarshal([]byte(caps), &d.Capabilities); err != nil {
		return d, fmt.Errorf("device %s: capabilities: %w", d.ID, err)
	}
	d.PairedAt = utcMillis(paired)
	d.LastSeen = utcMillis(seen)
	d.RevokedAt = utcMillis(revoked)
	return d, nil
}

// utcMillis is fromMillis in UTC, for answers shown to people.
func utcMillis(ms int64) time.Time { return fromMillis(ms).UTC() }

func toMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// AddPairingCode stores a new pairing code by its hash.
func (db *DB) AddPairingCode(ctx context.Context, codeHash []byte, created, expires time.Time) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		// Spent and expired codes have no further use.
		if _, err := tx.ExecContext(ctx, `DELETE FROM pairing_codes WHERE expires_at < ?`, created.Add(-24*time.Hour).UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO pairing_codes(code_hash, created_at, expires_at) VALUES (?, ?, ?)`,
			codeHash, created.UnixMilli(), expires.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: add pairing code: %w", err)
	}
	return nil
}

// PairingCodesUntil is when the last unused pairing code expires; zero when there is none.
func (db *DB) PairingCodesUntil(ctx context.Context) (time.Time, error) {
	var ms sql.NullInt64
	if err := db.r.QueryRowContext(ctx, `SELECT max(expires_at) FROM pairing_codes WHERE used_at = 0`).Scan(&ms); err != nil {
		return time.Time{}, fmt.Errorf("storage: pairing codes: %w", err)
	}
	return fromMillis(ms.Int64), nil
}

// PairDevice stores a new device. With a codeHash, the code must exist, be unused and not
// expired at d.PairedAt, and it is spent in the same transaction (ErrPairingCode otherwise).
func (db *DB) PairDevice(ctx context.Context, d Device, codeHash []byte) error {
	caps, err := json.Marshal(nonNil(d.Capabilities))
	if err != nil {
		return err
	}
	now := d.PairedAt.UnixMilli()
	// Durable: the device is answered its credential once and drops its pairing code; a power
	// cut must not forget the device (it would hold a token nobody knows).
	err = db.writeDurable(ctx, nil, func(tx *sql.Tx) error {
		if codeHash != nil {
			res, err := tx.ExecContext(ctx, `UPDATE pairing_codes SET used_at = ?, device_id = ? WHERE code_hash = ? AND used_at = 0 AND expires_at > ?`,
				now, d.ID, codeHash, now)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return ErrPairingCode
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO devices(`+deviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			d.ID, d.Kind, d.Name, d.AppVersion, d.Address, d.PushPort, string(caps), d.SecretHash, d.PushKey, now, d.PairedBy, toMillis(d.LastSeen))
		return err
	})
	if errors.Is(err, ErrPairingCode) {
		return err
	}
	if err != nil {
		return fmt.Errorf("storage: pair device: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Devices lists every device ever paired, revoked ones included, by pairing time.
func (db *DB) Devices(ctx context.Context) ([]Device, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices ORDER BY paired_at, id`)
	if err != nil {
		return nil, fmt.Errorf("storage: devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("storage: devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// GetDevice returns one device, or ErrNotFound.
func (db *DB) GetDevice(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(db.r.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNotFound
	}
	if err != nil {
		return d, fmt.Errorf("storage: get device: %w", err)
	}
	return d, nil
}

// UpdateDevice changes a device with f inside a transaction and returns it as stored; f must not
// change the id or the keys. ErrNotFound for an unknown device; f's error is returned as is.
func (db *DB) UpdateDevice(ctx context.Context, id string, f func(*Device) error) (Device, error) {
	var d Device
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id).Scan)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := f(&d); err != nil {
			return err
		}
		caps, err := json.Marshal(nonNil(d.Capabilities))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE devices SET kind = ?, name = ?, app_version = ?, address = ?, push_port = ?, capabilities = ?, last_seen = ? WHERE id = ?`,
			d.Kind, d.Name, d.AppVersion, d.Address, d.PushPort, string(caps), toMillis(d.LastSeen), id)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return d, err
		}
		return d, fmt.Errorf("storage: update device: %w", err)
	}
	return d, nil
}

// reasonRevoked is the reason of a command queued for a device revoked meanwhile, the one
// devices.Manager gives RevokeDevice.
const reasonRevoked = "device revoked"

// RevokeDevice marks a device revoked and fails its open commands with reason. It returns false
// when the device is unknown or was revoked already. The commit waits for the disk: an admin
// revoking a stolen device is told it is done, and a power cut right after must not give the
// device its credential back.
func (db *DB) RevokeDevice(ctx context.Context, id string, at time.Time, reason string) (bool, error) {
	var ok bool
	err := db.writeDurable(ctx, nil, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, at.UnixMilli(), id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if ok = n == 1; !ok {
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE device_commands SET state = 'failed', done_at = ?, reason = ? WHERE device_id = ? AND state IN ('queued', 'sent')`,
			at.UnixMilli(), reason, id)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("storage: revoke device: %w", err)
	}
	return ok, nil
}

// Command is one command for one device.
type Command struct {
	Seq       int64           `json:"-"`
	ID        string          `json:"id"`
	DeviceID  string          `json:"device_id"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
	OrderID   string          `json:"order_id,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	State     string          `json:"state"`
	Attempts  int64           `json:"attempts"`
	SentAt    *time.Time      `json:"sent_at"` // null: never sent
	DoneAt    *time.Time      `json:"done_at"` // null: not final yet
	Reason    string          `json:"reason,omitempty"`
}

const commandColumns = `seq, id, device_id, type, payload, order_id, created_at, expires_at, state, attempts, sent_at, done_at, reason`

func scanCommand(scan func(...any) error) (Command, error) {
	var c Command
	var payload []byte
	var created, expires, sent, done int64
	if err := scan(&c.Seq, &c.ID, &c.DeviceID, &c.Type, &payload, &c.OrderID, &created, &expires, &c.State, &c.Attempts, &sent, &done, &c.Reason); err != nil {
		return c, err
	}
	c.Payload = payload
	c.CreatedAt, c.ExpiresAt = utcMillis(created), utcMillis(expires)
	if sent != 0 {
		t := utcMillis(sent)
		c.SentAt = &t
	}
	if done != 0 {
		t := utcMillis(done)
		c.DoneAt = &t
	}
	return c, nil
}

// Cursor is a position in a log that a consumer advances in the same transaction as what it
// made of the entries up to it (see EnqueueCommands).
type Cursor struct {
	Name  string // meta key
	Value int64
}

// insertChunk is the most rows one INSERT carries (7 values each, far below SQLite's limit).
const insertChunk = 500

// EnqueueCommands stores new commands, queued, setting their Seq, and moves cursor (when not nil) in the same
// transaction, so that a consumer of the event log turns each event into commands exactly once.
func (db *DB) EnqueueCommands(ctx context.Context, cmds []Command, cursor *Cursor) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		// Many rows per statement: a command to every device of the shop is one burst.
		seqs := map[string]int64{}
		for start := 0; start < len(cmds); start += insertChunk {
			chunk := cmds[start:min(start+insertChunk, len(cmds))]
			var q strings.Builder
			q.WriteString(`INSERT INTO device_commands(id, device_id, type, payload, order_id, created_at, expires_at) VALUES `)
			args := make([]any, 0, 7*len(chunk))
			for i := range chunk {
				c := &chunk[i]
				if i > 0 {
					q.WriteByte(',')
				}
				q.WriteString(`(?, ?, ?, ?, ?, ?, ?)`)
				args = append(args, c.ID, c.DeviceID, c.Type, []byte(c.Payload), c.OrderID, c.CreatedAt.UnixMilli(), c.ExpiresAt.UnixMilli())
			}
			q.WriteString(` RETURNING id, seq`)
			rows, err := tx.QueryContext(ctx, q.String(), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				var seq int64
				if err := rows.Scan(&id, &seq); err != nil {
					rows.Close()
					return err
				}
				seqs[id] = seq
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		for i := range cmds {
			cmds[i].Seq = seqs[cmds[i].ID]
		}
		// A device revoked meanwhile (the caller chose its targets before) gets no command: it
		// fails at once, as RevokeDevice failed those queued before.
		if len(cmds) > 0 {
			first := slices.MinFunc(cmds, func(a, b Command) int { return cmp.Compare(a.Seq, b.Seq) }).Seq
			rows, err := tx.QueryContext(ctx, `UPDATE device_commands SET state = 'failed', done_at = created_at, reason = ?
				WHERE seq >= ? AND state = 'queued' AND device_id IN (SELECT id FROM devices WHERE revoked_at != 0) RETURNING seq`, reasonRevoked, first)
			if err != nil {
				return err
			}
			failed := map[int64]bool{}
			for rows.Next() {
				var seq int64
				if err := rows.Scan(&seq); err != nil {
					rows.Close()
					return err
				}
				failed[seq] = true
			}
			if err := rows.Close(); err != nil {
				return err
			}
			for i := range cmds {
				if failed[cmds[i].Seq] { // so that the caller reports them as they are
					done := cmds[i].CreatedAt
					cmds[i].State, cmds[i].Reason, cmds[i].DoneAt = CommandFailed, reasonRevoked, &done
				}
			}
		}
		if cursor != nil {
			_, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, cursor.Name, cursor.Value)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: enqueue commands: %w", err)
	}
	return nil
}

// MetaValue reads a counter from the meta table; ok is false when it was never written.
func (db *DB) MetaValue(ctx context.Context, key string) (v int64, ok bool, err error) {
	err = db.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("storage: meta %s: %w", key, err)
	}
	return v, true, nil
}

// SetMetaValue writes a counter of the meta table.
func (db *DB) SetMetaValue(ctx context.Context, key string, v int64) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, v)
		return err
	})
}

// LastEventID is the id of the newest event, 0 when there is none.
func (db *DB) LastEventID(ctx context.Context) (int64, error) {
	var id int64
	if err := db.r.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM events`).Scan(&id); err != nil {
		return 0, fmt.Errorf("storage: last event: %w", err)
	}
	return id, nil
}

// The statements of the push path that find commands by their state. The indexes of
// device_commands hold the open commands (queued or sent) or the closed ones by when they
// closed (migration 0020): SQLite uses such a partial index only when a query names the index's
// condition, state IN (…), as each of these does.
const (
	qOpenCommands = `SELECT ` + commandColumns + ` FROM device_commands
		WHERE device_id = ? AND state IN ('queued', 'sent') AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?`
	qQueuedCommandDevices = `SELECT DISTINCT device_id FROM device_commands
		WHERE state IN ('queued', 'sent') AND state = 'queued' AND expires_at > ? AND type = ?`
	qExpireCommands = `UPDATE device_commands SET state = 'expired', done_at = ?, reason = ? WHERE state IN ('queued', 'sent') AND expires_at <= ?`
	qPruneCommands  = `DELETE FROM device_commands WHERE state IN ('acknowledged', 'expired', 'failed') AND done_at < ?
		AND (? = '' OR type = ?)`
	qQueueDepth  = `SELECT count(*) FROM device_commands WHERE device_id = ? AND state IN ('queued', 'sent')`
	qQueueDepths = `SELECT device_id, count(*) FROM device_commands WHERE state IN ('queued', 'sent') GROUP BY device_id`
)

// OpenCommands returns up to limit of a device's queued and sent commands that have not expired
// at now, in delivery order, after seq after.
func (db *DB) OpenCommands(ctx context.Context, deviceID string, after int64, now time.Time, limit int) ([]Command, error) {
	rows, err := db.r.QueryContext(ctx, qOpenCommands, deviceID, after, now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("storage: open commands: %w", err)
	}
	return collectCommands(rows)
}

// DevicesWithQueuedCommand returns the devices that have a command of type typ queued (not sent
// yet) and not expired at now.
func (db *DB) DevicesWithQueuedCommand(ctx context.Context, typ string, now time.Time) (map[string]bool, error) {
	rows, err := db.r.QueryContext(ctx, qQueuedCommandDevices, now.UnixMilli(), typ)
	if err != nil {
		return nil, fmt.Errorf("storage: open commands: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("storage: open commands: %w", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

func collectCommands(rows *sql.Rows) ([]Command, error) {
	defer rows.Close()
	out := []Command{}
	for rows.Next() {
		c, err := scanCommand(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("storage: commands: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CommandFilter selects commands for ListCommands; zero fields select everything.
type CommandFilter struct {
	DeviceID string
	State    string
	Before   int64 // seq; 0: from the newest
	Limit    int
}

// ListCommands lists commands newest first.
func (db *DB) ListCommands(ctx context.Context, f CommandFilter) ([]Command, error) {
	q, args := listCommandsQuery(f)
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: list commands: %w", err)
	}
	return collectCommands(rows)
}

// listCommandsQuery is the statement of ListCommands, and its arguments.
func listCommandsQuery(f CommandFilter) (string, []any) {
	var where []string
	var args []any
	from := "device_commands"
	if f.DeviceID != "" {
		where, args = append(where, "device_id = ?"), append(args, f.DeviceID)
	}
	if f.State != "" {
		if f.State == CommandQueued || f.State == CommandSent {
			// The open commands, a few a device, by their index: SQLite's planner would rather
			// read the whole table backwards for the order and the limit.
			from += " INDEXED BY device_commands_open"
			where = append(where, "state IN ('queued', 'sent')")
		}
		where, args = append(where, "state = ?"), append(args, f.State)
	}
	if f.Before > 0 {
		where, args = append(where, "seq < ?"), append(args, f.Before)
	}
	q := `SELECT ` + commandColumns + ` FROM ` + from
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC LIMIT ?"
	return q, append(args, max(f.Limit, 1))
}

// GetCommand returns one command, or ErrNotFound.
func (db *DB) GetCommand(ctx context.Context, id string) (Command, error) {
	c, err := scanCommand(db.r.QueryRowContext(ctx, `SELECT `+commandColumns+` FROM device_commands WHERE id = ?`, id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("storage: get command: %w", err)
	}
	return c, nil
}

// CommandUpdate is one state change of a command, for UpdateCommands.
type CommandUpdate struct {
	Seq    int64 // the command's Seq
	ID     string
	State  string // CommandSent, CommandAcknowledged or CommandFailed
	At     time.Time
	Reason string
	// OrderID and DeviceID, for an order.new command, let an acknowledgement add the pushed
	// stage to the order's ledger.
	OrderID, DeviceID string
	// Final is set by UpdateCommands on a change to sent that found the command final already
	// (failed by a revocation, expired, cancelled, acknowledged): it must not be written.
	Final bool
}

// UpdateCommands applies state changes in one transaction. A change to sent counts an attempt;
// a change of a command already final is ignored, so a repeated ack is harmless, and a change
// to sent of such a command sets its Final; but an acknowledgement of a command that expired
// after it was written makes it acknowledged (reason lateAck). An acknowledged command with an
// OrderID adds the "pushed" stage to its order's ledger.
func (db *DB) UpdateCommands(ctx context.Context, ups []CommandUpdate) error {
	if len(ups) == 0 {
		return nil
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		// By seq, the table's rowid: the cheapest lookup there is, for 500 devices answering at
		// once.
		sent, err := tx.PrepareContext(ctx, `UPDATE device_commands SET state = 'sent', attempts = attempts + 1, sent_at = ? WHERE seq = ? AND state IN ('queued', 'sent')`)
		if err != nil {
			return err
		}
		defer sent.Close()
		// An acknowledgement of a command written to the device counts even once its time to
		// live ran out (expired meanwhile): the device did it.
		done, err := tx.PrepareContext(ctx, `UPDATE device_commands SET state = ?1, done_at = ?2,
			reason = CASE WHEN state = 'expired' THEN '`+lateAck+`' ELSE ?3 END
			WHERE seq = ?4 AND (state IN ('queued', 'sent') OR ?1 = 'acknowledged' AND state = 'expired' AND attempts > 0)`)
		if err != nil {
			return err
		}
		defer done.Close()
		for i := range ups {
			u := &ups[i]
			if u.State == CommandSent {
				res, err := sent.ExecContext(ctx, u.At.UnixMilli(), u.Seq)
				if err != nil {
					return err
				}
				n, err := res.RowsAffected()
				if err != nil {
					return err
				}
				u.Final = n == 0
				continue
			}
			res, err := done.ExecContext(ctx, u.State, u.At.UnixMilli(), u.Reason, u.Seq)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 && u.OrderID != "" && u.State == CommandAcknowledged {
				if err := ledger(ctx, tx, u.OrderID, u.At, orders.StagePushed, "to device "+u.DeviceID, ""); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: update commands: %w", err)
	}
	return nil
}

// lateAck is the reason of a command acknowledged after its time to live ran out.
const lateAck = "acknowledged after its time to live ran out"

// ExpireCommands marks expired every open command whose time ran out at now, with reason, and
// returns how many.
func (db *DB) ExpireCommands(ctx context.Context, now time.Time, reason string) (int64, error) {
	return db.writeCount(ctx, "expire commands", qExpireCommands, now.UnixMilli(), reason, now.UnixMilli())
}

// PruneCommands deletes the commands of type typ ("": of every type) that reached a final state
// before before, and returns how many.
func (db *DB) PruneCommands(ctx context.Context, before time.Time, typ string) (int64, error) {
	return db.writeCount(ctx, "prune commands", qPruneCommands, before.UnixMilli(), typ, typ)
}

// QueueDepth is one device's count of commands queued or sent, from the index on its open
// commands rather than a count over every device.
func (db *DB) QueueDepth(ctx context.Context, deviceID string) (int64, error) {
	var n int64
	if err := db.r.QueryRowContext(ctx, qQueueDepth, deviceID).Scan(&n); err != nil {
		return 0, fmt.Errorf("storage: queue depth: %w", err)
	}
	return n, nil
}

// QueueDepths counts each device's open (queued or sent) commands; devices with none are absent.
func (db *DB) QueueDepths(ctx context.Context) (map[string]int64, error) {
	out, err := keyedInts(db.stmt(qQueueDepths).QueryContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("storage: queue depths: %w", err)
	}
	return out, nil
}
