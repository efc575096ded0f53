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
	nc   net.Conn
	br   *bufio.Reader
	key  []byte
	own  []byte // this side's nonce: what the peer's frames are bound to
	peer []byte // the peer's nonce: what this side's frames are bound to
	// PeerID is the id the peer gave in its hello.
	PeerID string

	recvSeq uint64 // only the reader touches it

	wmu     sync.Mutex // protects the fields below
	sendSeq uint64
	wbuf    []byte
}

// NetConn is the underlying connection, for deadlines and addresses.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// readRaw reads one frame's bytes, refusing a frame announced larger than MaxFrameSize before
// reading its body.
func readRaw(br *bufio.Reader) ([]byte, error) {
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
	b, err := readRaw(c.br)
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
	f.Seq = c.sendSeq
	var err error
	c.wbuf, err = f.Append(c.wbuf[:0], c.key, c.peer)
	if err != nil {
		c.sendSeq--
		return err
	}
	if timeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, err = c.nc.Write(c.wbuf)
	return err
}

// WriteFrames writes several frames in one system call, as WriteFrame would one by one.
func (c *Conn) WriteFrames(fs []Frame, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.wbuf[:0]
	seq := c.sendSeq
	for _, f := range fs {
		seq++
		f.Seq = seq
		var err error
		if c.wbuf, err = f.Append(c.wbuf, c.key, c.peer); err != nil {
			return err
		}
	}
	c.sendSeq = seq
	if timeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, err := c.nc.Write(c.wbuf)
	return err
}

func newNonce() []byte {
	n := make([]byte, NonceSize)
	rand.Read(n)
	return n
}

// readHello reads the peer's hello, authenticated for ownNonce (nil: the zero nonce).
func readHello(br *bufio.Reader, key, ownNonce []byte) (Frame, error) {
	b, err := readRaw(br)
	if err != nil {
		return Frame{}, err
	}
	f, err := Decode(b, key, ownNonce)
	if err != nil {
		return Frame{}, err
	}
	switch {
	case f.Type == TypeError:
		return Frame{}, fmt.Errorf("push: the peer refused the connection: %q", truncate(f.Payload, 200))
	case f.Type != TypeHello:
		return Frame{}, fmt.Errorf("%w: first frame is a %s, want a hello", ErrMalformed, f.Type)
	case f.Seq != 0:
		return Frame{}, fmt.Errorf("%w: hello with sequence number %d, want 0", ErrMalformed, f.Seq)
	case len(f.Payload) != NonceSize:
		return Frame{}, fmt.Errorf("%w: hello nonce of %d bytes, want %d", ErrMalformed, len(f.Payload), NonceSize)
	}
	return f, nil
}

// ServerHandshake runs the server's side of the hello exchange on a connection it dialed: the
// device speaks first with its id and nonce, the server answers with its own, bound to the
// device's. wantDevice is the device the server meant to reach; another id is an error.
// timeout bounds the exchange.
func ServerHandshake(nc net.Conn, key []byte, serverID, wantDevice string, now time.Time, timeout time.Duration) (*Conn, error) {
	nc.SetDeadline(time.Now().Add(timeout))
	defer nc.SetDeadline(time.Time{})
	br := bufio.NewReaderSize(nc, 64<<10)
	hello, err := readHello(br, key, nil)
	if err != nil {
		return nil, fmt.Errorf("push: device hello: %w", err)
	}
	if hello.ID != wantDevice {
		return nil, fmt.Errorf("push: device hello: the device here is %q, not %q", hello.ID, wantDevice)
	}
	c := &Conn{nc: nc, br: br, key: key, own: newNonce(), peer: hello.Payload, PeerID: hello.ID}
	f := Frame{Type: TypeHello, Seq: 0, Time: now.UnixMilli(), ID: serverID, Payload: c.own}
	b, err := f.Encode(key, c.peer)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(b); err != nil {
		return nil, fmt.Errorf("push: server hello: %w", err)
	}
	return c, nil
}

// DeviceHandshake runs the device's side of the hello exchange on a connection the server made:
// the device sends its id and nonce, then checks that the server's hello is bound to that
// nonce, which proves the server holds the device's key and is not replaying an old
// connection. timeout bounds the exchange.
func DeviceHandshake(nc net.Conn, key []byte, deviceID string, now time.Time, timeout time.Duration) (*Conn, error) {
	nc.SetDeadline(time.Now().Add(timeout))
	defer nc.SetDeadline(time.Time{})
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), key: key, own: newNonce()}
	f := Frame{Type: TypeHello, Seq: 0, Time: now.UnixMilli(), ID: deviceID, Payload: c.own}
	b, err := f.Encode(key, nil)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(b); err != nil {
		return nil, fmt.Errorf("push: device hello: %w", err)
	}
	hello, err := readHello(c.br, key, c.own)
	if err != nil {
		return nil, fmt.Errorf("push: server hello: %w", err)
	}
	c.peer, c.PeerID = hello.Payload, hello.ID
	return c, nil
}

// SendError writes an error frame with a reason, best effort, before the caller closes. Its MAC
// is bound to peerNonce (nil before the peer's hello).
func SendError(nc net.Conn, key, peerNonce []byte, reason string, now time.Time) {
	if len(reason) > 512 {
		reason = reason[:512]
	}
	f := Frame{Type: TypeError, Time: now.UnixMilli(), ID: "error", Payload: []byte(reason)}
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
	if len(reason) > 512 {
		reason = reason[:512]
	}
	f := Frame{Type: TypeError, Seq: c.sendSeq, Time: now.UnixMilli(), ID: "error", Payload: []byte(reason)}
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
