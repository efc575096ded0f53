package devices

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/storeedge/storeedge/devices/push"
	"github.com/storeedge/storeedge/storage"
)

// Target selects the devices a command goes to: one device, every device of a kind, every
// device with a capability, or all. Revoked devices are never targets.
type Target struct {
	DeviceID   string `json:"device_id,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Capability string `json:"capability,omitempty"`
	All        bool   `json:"all,omitempty"`
}

// Command types with a meaning documented in docs/push-protocol.md; others are allowed and
// passed on to devices as they are.
const (
	CmdOrderNew       = push.CommandOrderNew
	CmdPrint          = push.CommandPrint
	CmdCatalogChanged = push.CommandCatalogChanged
	CmdReload         = push.CommandReload
	CmdPing           = push.CommandPing
)

// MaxPayload is the largest command payload, what fits in one push frame.
const MaxPayload = push.MaxPayload - 1024

// targets returns the ids of the live devices t selects.
func (m *Manager) targets(t Target) ([]string, error) {
	n := 0
	for _, set := range []bool{t.DeviceID != "", t.Kind != "", t.Capability != "", t.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, &InvalidError{"target", "give exactly one of device_id, kind, capability or all"}
	}
	if t.Kind != "" && !slices.Contains(Kinds, t.Kind) {
		return nil, &InvalidError{"target.kind", fmt.Sprintf("%q is not one of %s", t.Kind, strings.Join(Kinds, ", "))}
	}
	if t.Capability != "" && !validToken(t.Capability) {
		return nil, &InvalidError{"target.capability", fmt.Sprintf("%q: want 1 to 32 of a-z 0-9 . _ -, starting with a letter", t.Capability)}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var ids []string
	for id, e := range m.devs {
		d := e.dev
		if !d.RevokedAt.IsZero() {
			continue
		}
		if t.All || id == t.DeviceID || (t.Kind != "" && d.Kind == t.Kind) || (t.Capability != "" && slices.Contains(d.Capabilities, t.Capability)) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		if t.DeviceID != "" {
			if e := m.devs[t.DeviceID]; e != nil {
				return nil, fmt.Errorf("%w: device %s is revoked", ErrNoTarget, t.DeviceID)
			}
		}
		return nil, ErrNoTarget
	}
	slices.Sort(ids)
	return ids, nil
}

// Send stores a command for each device t selects and pushes it as soon as the device is
// connected. ttl 0 takes the configured command TTL.
func (m *Manager) Send(ctx context.Context, t Target, typ string, payload json.RawMessage, ttl time.Duration) ([]storage.Command, error) {
	if !validToken(typ) {
		return nil, &InvalidError{"type", fmt.Sprintf("%q: want 1 to 32 of a-z 0-9 . _ -, starting with a letter (order.new, print, catalog.changed, reload, ping…)", typ)}
	}
	if len(payload) == 0 || string(payload) == "null" {
		payload = json.RawMessage(`{}`)
	}
	if len(payload) > MaxPayload {
		return nil, &InvalidError{"payload", fmt.Sprintf("%d bytes; at most %d fit in a push frame", len(payload), MaxPayload)}
	}
	if ttl < 0 || ttl > 0 && ttl < time.Second || ttl > 30*24*time.Hour {
		return nil, &InvalidError{"ttl", "want a duration between 1s and 720h"}
	}
	if ttl == 0 {
		ttl = m.o.CommandTTL
	}
	ids, err := m.targets(t)
	if err != nil {
		return nil, err
	}
	now := m.now()
	cmds := make([]storage.Command, 0, len(ids))
	for _, id := range ids {
		cmds = append(cmds, m.newCommand(id, typ, payload, "", now, ttl))
	}
	if err := m.enqueue(ctx, cmds, nil); err != nil {
		return nil, err
	}
	queued := 0
	for _, c := range cmds {
		if c.State == storage.CommandQueued {
			queued++
		}
	}
	m.log.Info("devices: command queued", slog.String(keyType, typ), slog.Int(keyCount, queued))
	if failed := len(cmds) - queued; failed > 0 {
		m.log.Info("devices: command failed at once: its device was revoked meanwhile", slog.String(keyType, typ), slog.Int(keyCount, failed))
	}
	return cmds, nil
}

func (m *Manager) newCommand(deviceID, typ string, payload json.RawMessage, orderID string, now time.Time, ttl time.Duration) storage.Command {
	return storage.Command{
		ID:        "cmd_" + uuid.Must(uuid.NewV7()).String(),
		DeviceID:  deviceID,
		Type:      typ,
		Payload:   payload,
		OrderID:   orderID,
		CreatedAt: time.UnixMilli(now.UnixMilli()).UTC(),
		ExpiresAt: time.UnixMilli(now.Add(ttl).UnixMilli()).UTC(),
		State:     storage.CommandQueued,
	}
}

// enqueue stores commands, then hands each to its device's link. A link writes what it is
// handed after the last command it wrote (by seq), so it must be handed its commands in the
// order they were stored: two enqueues at once (a command to every device while a new order is
// queued for the order-taking ones) would otherwise hand a device the later command first, and
// the earlier one would be left queued while the device stays connected. The database has one
// writer anyway; what the lock adds to it is the handing over, a few microseconds a device.
func (m *Manager) enqueue(ctx context.Context, cmds []storage.Command, cursor *storage.Cursor) error {
	m.enqueueMu.Lock()
	defer m.enqueueMu.Unlock()
	m.enqueues.started.Add(1)
	defer m.enqueues.done.Add(1)
	if err := m.db.EnqueueCommands(ctx, cmds, cursor); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, c := range cmds {
		if l := m.links[c.DeviceID]; l != nil && c.State == storage.CommandQueued { // not one failed at once (a revoked device)
			l.offer(c)
		}
	}
	return nil
}

// Commands lists commands, newest first.
func (m *Manager) Commands(ctx context.Context, f storage.CommandFilter) ([]storage.Command, error) {
	return m.db.ListCommands(ctx, f)
}

// Command returns one command, or storage.ErrNotFound.
func (m *Manager) Command(ctx context.Context, id string) (storage.Command, error) {
	return m.db.GetCommand(ctx, id)
}

// prune deletes the commands finished more than keepCommands ago, and the catalog notices
// finished more than keepCatalogNotices ago.
func (m *Manager) prune(ctx context.Context) {
	notices, err := m.db.PruneCommands(ctx, m.now().Add(-keepCatalogNotices), CmdCatalogChanged)
	var n int64
	if err == nil {
		n, err = m.db.PruneCommands(ctx, m.now().Add(-keepCommands), "")
	}
	switch {
	case err != nil && ctx.Err() == nil:
		m.log.Warn("devices: cannot prune old commands; will retry", slog.Any(keyError, err))
	case n+notices > 0:
		m.log.Debug("devices: old commands pruned", slog.Int64(keyCount, n+notices))
	}
}

// expireReason is recorded on a command whose TTL ran out.
const expireReason = "not acknowledged by the device within its time to live"

// expire marks the commands whose time ran out.
func (m *Manager) expire(ctx context.Context) {
	n, err := m.db.ExpireCommands(ctx, m.now(), expireReason)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("devices: cannot expire commands; will retry", slog.Any(keyError, err))
		}
		return
	}
	if n > 0 {
		m.log.Info("devices: commands expired", slog.Int64(keyCount, n))
	}
}
