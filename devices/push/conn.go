package push

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Conn is one authenticated push connection after the hello exchange: frames it writes carry the
// peer's nonce in their MAC and a growing sequence number, frames it reads must carry this side's
// nonce and a sequence number above the last one read. It is safe for one reader and many
// writers at once.
type Conn struct {
	nc      net.Conn
	br      *bufio.Reader
	version byte // the protocol version both sides speak on it
	key     []byte
	own     []byte // this side's nonce: what the peer's frames are bound to
	peer    []byte // the peer's nonce: what this side's frames are bound to
	// PeerID is the id the peer gave in its hello.
	PeerID string

	recvSeq uint64 // only the reader touches it

	wmu     sync.Mutex // protects the fields below
	sendSeq uint64
	wbuf    []byte
}

// NetConn is the underlying connection, for deadlines and addresses.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Version is the protocol version spoken on the connection.
func (c *Conn) Version() int { return int(c.version) }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// readRaw reads one frame's bytes, refusing a frame announced larger than MaxFrameSize, or in
// another version than version (0: any this side speaks), before reading its body.
func readRaw(br *bufio.Reader, version byte) ([]byte, error) {
	header, err := br.Peek(headerSize)
	if err != nil {
		if errors.Is(err, io.EOF) && len(header) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n, err := FrameLen(header)
	if err != nil {
		return nil, err
	}
	if version != 0 && header[2] != version {
		return nil, fmt.Errorf("%w %d on a connection of version %d", ErrVersion, header[2], version)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// ReadFrame reads and checks the next frame. Any error means the connection can no longer be
// trusted and should be closed.
func (c *Conn) ReadFrame() (Frame, error) {
	b, err := readRaw(c.br, c.version)
	if err != nil {
		return Frame{}, err
	}
	f, err := Decode(b, c.key, c.own)
	if err != nil {
		return Frame{}, err
	}
	if f.Type == TypeHello {
		return Frame{}, fmt.Errorf("%w: a second hello", ErrMalformed)
	}
	if f.Seq <= c.recvSeq {
		return Frame{}, fmt.Errorf("%w: got %d after %d", ErrReplay, f.Seq, c.recvSeq)
	}
	c.recvSeq = f.Seq
	return f, nil
}

// WriteFrame gives f the next sequence number, authenticates it and writes it. timeout bounds
// the write; 0 means none.
func (c *Conn) WriteFrame(f Frame, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.sendSeq++
	f.Seq, f.Version = c.sendSeq, c.version
	var err error
	c.wbuf, err = f.Append(c.wbuf[:0], c.key, c.peer)
	if err != nil {
		c.sendSeq--
		return err
	}
	return c.writeBuf(timeout)
}

// WriteFrames writes several frames in one system call, as WriteFrame would one by one.
func (c *Conn) WriteFrames(fs []Frame, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.wbuf[:0]
	seq := c.sendSeq
	for _, f := range fs {
		seq++
		f.Seq, f.Version = seq, c.version
		var err error
		if c.wbuf, err = f.Append(c.wbuf, c.key, c.peer); err != nil {
			return err
		}
	}
	c.sendSeq = seq
	return c.writeBuf(timeout)
}

// writeBuf writes wbuf. timeout is for a part that makes no progress, not for the whole: a
// backlog of large commands may take longer than that to cross a slow Wi-Fi link while the
// device reads.
func (c *Conn) writeBuf(timeout time.Duration) error {
	var err error
	for b := c.wbuf; len(b) > 0 && err == nil; {
		n := min(len(b), writePart)
		if timeout > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(timeout))
		}
		_, err = c.nc.Write(b[:n])
		b = b[n:]
	}
	if cap(c.wbuf) > keptBuffer {
		c.wbuf = nil // a burst of large commands does not stay with the connection
	}
	return err
}

// writePart is the most WriteFrames writes under one deadline: at 10 s, a link slower than
// 6.5 KB/s fails.
const writePart = 64 << 10

// keptBuffer is the largest write buffer a connection keeps between writes.
const keptBuffer = 256 << 10

func newNonce() []byte {
	n := make([]byte, NonceSize)
	rand.Read(n)
	return n
}

// readHello reads the peer's hello, authenticated for ownNonce (nil: the zero nonce). version
// is the version the frame announced, when it announced one this side speaks (else Version), so
// that a refusal can be sent in it. A hello that verified but breaks a rule of the hello comes
// back with the error, so that the refusal can be bound to the nonce it carries.
func readHello(br *bufio.Reader, key, ownNonce []byte) (f Frame, version byte, err error) {
	b, err := readRaw(br, 0)
	if err != nil {
		return Frame{}, Version, err
	}
	version = b[2]
	f, err = Decode(b, key, ownNonce)
	if err != nil {
		return Frame{}, version, err
	}
	switch {
	case f.Type == TypeError:
		return Frame{}, version, fmt.Errorf("push: the peer refused the connection: %q", truncate(f.Payload, 200))
	case f.Type != TypeHello:
		return Frame{}, version, fmt.Errorf("%w: first frame is a %s, want a hello", ErrMalformed, f.Type)
	case f.Seq != 0:
		return f, version, fmt.Errorf("%w: hello with sequence number %d, want 0", ErrMalformed, f.Seq)
	case len(f.Payload) != NonceSize:
		return f, version, fmt.Errorf("%w: hello nonce of %d bytes, want %d", ErrMalformed, len(f.Payload), NonceSize)
	}
	return f, version, nil
}

// ErrOldVersion refuses a device that speaks a protocol version older than the server accepts.
var ErrOldVersion = errors.New("push: protocol version refused")

// ServerHandshake runs the server's side of the hello exchange on a connection it dialed: the
// device speaks first with its id and nonce, the server answers with its own, bound to the
// device's, in the device's version; in version 2 the device then acknowledges the server's
// hello, bound to the server's nonce, which proves it holds the key now (a hello replayed from
// an earlier connection cannot be followed by it). wantDevice is the device the server meant to
// reach; another id is an error, and so is a version below minVersion (ErrOldVersion). A
// refusal is told to the device in an error frame. timeout bounds the exchange.
func ServerHandshake(nc net.Conn, key []byte, serverID, wantDevice string, minVersion int, now time.Time, timeout time.Duration) (*Conn, error) {
	nc.SetDeadline(time.Now().Add(timeout))
	defer nc.SetDeadline(time.Time{})
	br := bufio.NewReaderSize(nc, 64<<10)
	hello, version, err := readHello(br, key, nil)
	switch {
	case err != nil:
	case hello.ID != wantDevice:
		err = fmt.Errorf("the device here is %q, not %q", hello.ID, wantDevice)
	case int(hello.Version) < minVersion:
		err = fmt.Errorf("%w: the device speaks version %d; this server wants %d or later", ErrOldVersion, hello.Version, minVersion)
	}
	if err != nil {
		if !IsConnError(err) {
			// Bound to the device's nonce when its hello verified, so that it can read why.
			SendError(nc, version, key, hello.Payload, err.Error(), now)
		}
		return nil, fmt.Errorf("push: device hello: %w", err)
	}
	c := &Conn{nc: nc, br: br, version: hello.Version, key: key, own: newNonce(), peer: hello.Payload, PeerID: hello.ID}
	f := Frame{Version: c.version, Type: TypeHello, Seq: 0, Time: now.UnixMilli(), ID: serverID, Payload: c.own}
	b, err := f.Encode(key, c.peer)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(b); err != nil {
		return nil, fmt.Errorf("push: server hello: %w", err)
	}
	if c.version >= 2 {
		if err := c.readHelloAck(serverID); err != nil {
			if !IsConnError(err) {
				c.SendError(err.Error(), now)
			}
			return nil, fmt.Errorf("push: device's acknowledgement of the server hello: %w", err)
		}
	}
	return c, nil
}

// readHelloAck reads the device's first frame after the hellos, which in version 2 must be its
// acknowledgement of the server's hello: an ack whose id is the server's.
func (c *Conn) readHelloAck(serverID string) error {
	f, err := c.ReadFrame()
	switch {
	case err != nil:
		return err
	case f.Type == TypeError:
		return fmt.Errorf("the device refused the connection: %q", truncate(f.Payload, 200))
	case f.Type != TypeAck || f.ID != serverID:
		return fmt.Errorf("%w: a %s of %q, want the ack of the server hello (%q)", ErrMalformed, f.Type, f.ID, serverID)
	case f.Seq != 1:
		return fmt.Errorf("%w: the ack of the server hello has seq %d, want 1 (the device's first frame)", ErrMalformed, f.Seq)
	}
	return nil
}

// IsConnError tells a failed or closed connection from a peer that sent something wrong.
func IsConnError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// DeviceHandshake runs the device's side of the hello exchange, in the given protocol version,
// on a connection the server made: the device sends its id and nonce, then checks that the
// server's hello is bound to that nonce, which proves the server holds the device's key and is
// not replaying an old connection; in version 2 it then acknowledges the server's hello, which
// proves the same of the device to the server. timeout bounds the exchange.
func DeviceHandshake(nc net.Conn, key []byte, deviceID string, version int, now time.Time, timeout time.Duration) (*Conn, error) {
	if version < MinVersion || version > Version {
		return nil, fmt.Errorf("%w %d (this side speaks %d to %d)", ErrVersion, version, MinVersion, Version)
	}
	nc.SetDeadline(time.Now().Add(timeout))
	defer nc.SetDeadline(time.Time{})
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), version: byte(version), key: key, own: newNonce()}
	f := Frame{Version: c.version, Type: TypeHello, Seq: 0, Time: now.UnixMilli(), ID: deviceID, Payload: c.own}
	b, err := f.Encode(key, nil)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(b); err != nil {
		return nil, fmt.Errorf("push: device hello: %w", err)
	}
	hello, _, err := readHello(c.br, key, c.own)
	if err == nil && hello.Version != c.version {
		err = fmt.Errorf("%w %d in answer to a hello of version %d", ErrVersion, hello.Version, c.version)
	}
	if err != nil {
		return nil, fmt.Errorf("push: server hello: %w", err)
	}
	c.peer, c.PeerID = hello.Payload, hello.ID
	if c.version >= 2 {
		if err := c.WriteFrame(Frame{Type: TypeAck, Time: now.UnixMilli(), ID: hello.ID}, timeout); err != nil {
			return nil, fmt.Errorf("push: acknowledge the server hello: %w", err)
		}
	}
	return c, nil
}

// SendError writes an error frame of the given version with a reason, best effort, before the
// caller closes. Its MAC is bound to peerNonce (nil before the peer's hello).
func SendError(nc net.Conn, version byte, key, peerNonce []byte, reason string, now time.Time) {
	f := Frame{Version: version, Type: TypeError, Time: now.UnixMilli(), ID: "error", Payload: []byte(Reason(reason))}
	if b, err := f.Encode(key, peerNonce); err == nil {
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write(b)
	}
}

// SendError writes an error frame with a reason on an established connection, best effort,
// before the caller closes it.
func (c *Conn) SendError(reason string, now time.Time) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.sendSeq++
	f := Frame{Version: c.version, Type: TypeError, Seq: c.sendSeq, Time: now.UnixMilli(), ID: "error", Payload: []byte(Reason(reason))}
	if b, err := f.Encode(c.key, c.peer); err == nil {
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.nc.Write(b)
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
