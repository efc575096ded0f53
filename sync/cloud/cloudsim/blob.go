package cloudsim

import (
	"crypto/md5"
	"encoding/binary"
	"io"
	"strconv"
	"sync"
)

// A media item's blob is generated like its manifest: its name, size and content type, and
// every byte of its content, are a pure function of (seed, index, version), so a container of
// any size costs no memory and any range of any blob can be produced on demand. Sizes are those
// of a shop's media: most are images of 8–120 KB, one in 13 a PDF of 50–500 KB, one in 50 a video
// of 1–4 MiB, and one in 1000 a large video of 20–100 MiB.

// mediaSpec is what a media item's blob is at one version.
type mediaSpec struct {
	idx         int
	ver         uint32
	name        string
	size        int64
	contentType string
}

// mediaSpec returns the blob of media idx at version ver.
func (c *catalog) mediaSpec(idx int, ver uint32) mediaSpec {
	r := newItemRand(c.seed, tagMedia, idx, ver)
	ext, ctype := "jpg", "image/jpeg"
	size := int64(8_000 + r.intn(112_000))
	switch {
	case idx%1000 == 999:
		ext, ctype = "mp4", "video/mp4"
		size = int64(20<<20 + r.intn(80<<20))
	case idx%50 == 49:
		ext, ctype = "mp4", "video/mp4"
		size = int64(1<<20 + r.intn(3<<20))
	case idx%13 == 5:
		ext, ctype = "pdf", "application/pdf"
		size = int64(50_000 + r.intn(450_000))
	case idx%7 == 3:
		ext, ctype = "png", "image/png"
		size = int64(10_000 + r.intn(190_000))
	}
	name := "products/" + itemID('M', idx) + "." + ext
	return mediaSpec{idx: idx, ver: ver, name: name, size: size, contentType: ctype}
}

// blobBlock is the unit of content generation: each block comes from its own generator, so a
// range can start anywhere.
const blobBlock = 4096

// blobContent is the content of one blob, readable at any offset.
type blobContent struct {
	seed uint64
	spec mediaSpec
}

var _ io.ReaderAt = blobContent{}

func (b blobContent) ReadAt(p []byte, off int64) (int, error) {
	if off >= b.spec.size {
		return 0, io.EOF
	}
	n := 0
	var block [blobBlock]byte
	for n < len(p) && off < b.spec.size {
		bi := off / blobBlock
		b.fill(&block, bi)
		start := int(off - bi*blobBlock)
		end := min(blobBlock, int(b.spec.size-bi*blobBlock))
		c := copy(p[n:], block[start:end])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fill generates block bi.
func (b blobContent) fill(block *[blobBlock]byte, bi int64) {
	r := newItemRand(b.seed^uint64(bi)*0x9E3779B97F4A7C15, tagBlob, b.spec.idx, b.spec.ver)
	for i := 0; i < blobBlock; i += 8 {
		binary.LittleEndian.PutUint64(block[i:], r.next())
	}
}

// reader returns the whole content as a stream.
func (b blobContent) reader() io.Reader { return io.NewSectionReader(b, 0, b.spec.size) }

// blobSums remembers the MD5 of every blob version generated, computed on first use.
type blobSums struct {
	mu   sync.Mutex // protects the field below
	sums map[blobKey][16]byte
}

type blobKey struct {
	idx int
	ver uint32
}

func newBlobSums() *blobSums { return &blobSums{sums: map[blobKey][16]byte{}} }

// sum returns the MD5 of a blob's content.
func (s *blobSums) sum(seed uint64, spec mediaSpec) [16]byte {
	k := blobKey{spec.idx, spec.ver}
	s.mu.Lock()
	v, ok := s.sums[k]
	s.mu.Unlock()
	if ok {
		return v
	}
	h := md5.New()
	io.Copy(h, blobContent{seed, spec}.reader())
	copy(v[:], h.Sum(nil))
	s.mu.Lock()
	s.sums[k] = v
	s.mu.Unlock()
	return v
}

// mediaIndex reads the index of a media blob name, "products/M0000123.jpg" → 122.
func mediaIndex(name string) (int, bool) {
	const prefix = "products/M"
	if len(name) < len(prefix)+idDigits || name[:len(prefix)] != prefix {
		return 0, false
	}
	n, err := strconv.Atoi(name[len(prefix) : len(prefix)+idDigits])
	if err != nil || n < 1 {
		return 0, false
	}
	return n - 1, true
}
