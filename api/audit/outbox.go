package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrOutboxLocked is returned by NewPublisher when another publisher (in this
// or another process) holds the outbox directory.
var ErrOutboxLocked = errors.New("audit outbox directory is in use by another publisher")

// errOutboxFull is returned by outbox.append when the record does not fit.
var errOutboxFull = errors.New("audit outbox is full")

const (
	segmentPrefix   = "seg-"
	segmentSuffix   = ".log"
	cursorFile      = "HEAD"
	lockFile        = "LOCK"
	recordHeader    = 8       // 4 bytes body length, 4 bytes CRC-32C of the body
	maxRecordBody   = 8 << 20 // sanity bound when reading
	defaultSegBytes = 4 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// message is one audit message waiting to be published.
type message struct {
	subject string
	id      string
	data    []byte
}

func (m message) size() int64 {
	return int64(recordHeader + 4 + len(m.subject) + len(m.id) + len(m.data))
}

// outbox is the on-disk part of the publisher's queue: an append-only log of
// messages split into segment files, and a HEAD file with the position of the
// oldest unpublished message. Records carry a CRC, so a record torn by a
// crash is detected and cut off when the outbox is opened again. Nothing is
// fsynced: the outbox survives process crashes (the page cache does), not
// power loss. It is not safe for concurrent use; the Publisher guards it.
type outbox struct {
	dir      string
	maxBytes int64
	segBytes int64
	log      *slog.Logger

	lock     *os.File
	cursor   *os.File
	segs     []uint64 // segment sequence numbers, oldest first; segs[0] holds the head
	sizes    []int64  // file sizes of segs
	headOff  int64    // offset of the oldest pending record in segs[0]
	headFile *os.File // segs[0] open for reading, lazily
	tail     *os.File // segs[len-1] open for appending, lazily
	nextSeq  uint64
	count    int
	bytes    int64
	head     *message // decoded oldest record, cached
	headSize int64
}

// openOutbox opens (creating if needed) and recovers the outbox in dir.
func openOutbox(dir string, maxBytes, segBytes int64, log *slog.Logger) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create audit outbox %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit outbox lock in %s: %w", dir, err)
	}
	if err := lockFileExclusive(lock); err != nil {
		_ = lock.Close()
		if errors.Is(err, ErrOutboxLocked) {
			return nil, fmt.Errorf("open audit outbox %s: %w", dir, ErrOutboxLocked)
		}
		return nil, fmt.Errorf("lock audit outbox %s: %w", dir, err)
	}
	o := &outbox{dir: dir, maxBytes: maxBytes, segBytes: segBytes, log: log, lock: lock}
	if err := o.recover(); err != nil {
		o.close()
		return nil, err
	}
	return o, nil
}

func (o *outbox) segPath(seq uint64) string {
	return filepath.Join(o.dir, fmt.Sprintf("%s%020d%s", segmentPrefix, seq, segmentSuffix))
}

// recover reads HEAD, drops consumed segments, and scans the rest, cutting
// off torn or corrupt records.
func (o *outbox) recover() error {
	cursor, err := os.OpenFile(filepath.Join(o.dir, cursorFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open audit outbox cursor in %s: %w", o.dir, err)
	}
	o.cursor = cursor
	var buf [16]byte
	var headSeq uint64
	var headOff int64
	if n, _ := cursor.ReadAt(buf[:], 0); n == len(buf) {
		headSeq = binary.BigEndian.Uint64(buf[:8])
		headOff = int64(binary.BigEndian.Uint64(buf[8:]))
	}
	entries, err := os.ReadDir(o.dir)
	if err != nil {
		return fmt.Errorf("list audit outbox %s: %w", o.dir, err)
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, segmentPrefix) || !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, segmentPrefix), segmentSuffix), 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	o.nextSeq = headSeq
	for _, seq := range seqs {
		o.nextSeq = max(o.nextSeq, seq+1)
		if seq < headSeq {
			if err := os.Remove(o.segPath(seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove published audit outbox segment: %w", err)
			}
			continue
		}
		start := int64(0)
		if seq == headSeq {
			start = headOff
		}
		size, count, bytes, err := o.scan(seq, start)
		if err != nil {
			return err
		}
		if len(o.segs) == 0 {
			o.headOff = start
		}
		o.segs = append(o.segs, seq)
		o.sizes = append(o.sizes, size)
		o.count += count
		o.bytes += bytes
	}
	if o.count == 0 {
		return o.reset()
	}
	if o.log != nil {
		o.log.Info("audit outbox holds events from an earlier run; they are published first", "dir", o.dir, "events", o.count)
	}
	return o.writeCursor()
}

// scan validates the records of segment seq from offset start and truncates
// the file after the last good one. It returns the (new) file size and the
// count and bytes of the records from start.
func (o *outbox) scan(seq uint64, start int64) (int64, int, int64, error) {
	path := o.segPath(seq)
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("open audit outbox segment: %w", err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("stat audit outbox segment: %w", err)
	}
	size := st.Size()
	if start > size {
		start = size
	}
	off := start
	count := 0
	for off < size {
		_, n, err := readRecord(f, off)
		if err != nil {
			if o.log != nil {
				o.log.Warn("audit outbox segment ends in a torn or corrupt record; cutting it off", "segment", filepath.Base(path), "offset", off, "bytes_dropped", size-off)
			}
			if err := f.Truncate(off); err != nil {
				return 0, 0, 0, fmt.Errorf("truncate audit outbox segment: %w", err)
			}
			size = off
			break
		}
		off += n
		count++
	}
	return size, count, off - start, nil
}

// readRecord reads the record at off and returns it with its size on disk.
func readRecord(r io.ReaderAt, off int64) (message, int64, error) {
	var hdr [recordHeader]byte
	if _, err := r.ReadAt(hdr[:], off); err != nil {
		return message{}, 0, fmt.Errorf("read record header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 4 || n > maxRecordBody {
		return message{}, 0, fmt.Errorf("record length %d out of range", n)
	}
	body := make([]byte, n)
	if _, err := r.ReadAt(body, off+recordHeader); err != nil {
		return message{}, 0, fmt.Errorf("read record body: %w", err)
	}
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return message{}, 0, errors.New("record checksum mismatch")
	}
	m, err := decodeRecord(body)
	if err != nil {
		return message{}, 0, err
	}
	return m, recordHeader + int64(n), nil
}

func encodeRecord(m message) []byte {
	body := 4 + len(m.subject) + len(m.id) + len(m.data)
	b := make([]byte, recordHeader, recordHeader+body)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.subject)))
	b = append(b, m.subject...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.id)))
	b = append(b, m.id...)
	b = append(b, m.data...)
	binary.BigEndian.PutUint32(b[:4], uint32(body))
	binary.BigEndian.PutUint32(b[4:8], crc32.Checksum(b[recordHeader:], crcTable))
	return b
}

func decodeRecord(body []byte) (message, error) {
	read := func() (string, bool) {
		if len(body) < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(body))
		if len(body) < 2+n {
			return "", false
		}
		s := string(body[2 : 2+n])
		body = body[2+n:]
		return s, true
	}
	subject, ok1 := read()
	id, ok2 := read()
	if !ok1 || !ok2 {
		return message{}, errors.New("malformed record")
	}
	return message{subject: subject, id: id, data: body}, nil
}

// append adds m at the end; errOutboxFull when it does not fit in maxBytes.
func (o *outbox) append(m message) error {
	if len(m.subject) > 0xffff || len(m.id) > 0xffff {
		return errors.New("audit message subject or id too long")
	}
	size := m.size()
	if o.bytes+size > o.maxBytes {
		return errOutboxFull
	}
	last := len(o.segs) - 1
	if o.tail == nil || (o.sizes[last] > 0 && o.sizes[last]+size > o.segBytes) {
		if err := o.openTail(size); err != nil {
			return err
		}
		last = len(o.segs) - 1
	}
	rec := encodeRecord(m)
	if _, err := o.tail.Write(rec); err != nil {
		_ = o.tail.Truncate(o.sizes[last])
		return fmt.Errorf("write audit outbox: %w", err)
	}
	o.sizes[last] += size
	o.count++
	o.bytes += size
	return nil
}

// openTail opens the last segment for appending, or starts a new one when
// there is none or the record would overflow it.
func (o *outbox) openTail(size int64) error {
	if o.tail != nil {
		_ = o.tail.Close()
		o.tail = nil
	}
	last := len(o.segs) - 1
	if last >= 0 && o.sizes[last]+size <= o.segBytes {
		f, err := os.OpenFile(o.segPath(o.segs[last]), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open audit outbox segment: %w", err)
		}
		o.tail = f
		return nil
	}
	seq := o.nextSeq
	f, err := os.OpenFile(o.segPath(seq), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create audit outbox segment: %w", err)
	}
	o.nextSeq++
	o.tail = f
	o.segs = append(o.segs, seq)
	o.sizes = append(o.sizes, 0)
	if len(o.segs) == 1 {
		o.headOff = 0
		if err := o.writeCursor(); err != nil {
			return err
		}
	}
	return nil
}

// peek returns the oldest pending message; ok is false when there is none.
func (o *outbox) peek() (message, bool, error) {
	if o.count == 0 {
		return message{}, false, nil
	}
	if o.head != nil {
		return *o.head, true, nil
	}
	if o.headFile == nil {
		f, err := os.Open(o.segPath(o.segs[0]))
		if err != nil {
			return message{}, false, fmt.Errorf("open audit outbox segment: %w", err)
		}
		o.headFile = f
	}
	m, n, err := readRecord(o.headFile, o.headOff)
	if err != nil {
		return message{}, false, fmt.Errorf("read audit outbox segment %d at %d: %w", o.segs[0], o.headOff, err)
	}
	o.head, o.headSize = &m, n
	return m, true, nil
}

// pop drops the oldest message (which peek returned) and persists the cursor.
func (o *outbox) pop() error {
	if o.count == 0 || o.head == nil {
		return errors.New("audit outbox: pop without peek")
	}
	o.headOff += o.headSize
	o.count--
	o.bytes -= o.headSize
	o.head = nil
	if o.count == 0 {
		return o.reset()
	}
	for len(o.segs) > 1 && o.headOff >= o.sizes[0] {
		if o.headFile != nil {
			_ = o.headFile.Close()
			o.headFile = nil
		}
		if err := os.Remove(o.segPath(o.segs[0])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove published audit outbox segment: %w", err)
		}
		o.segs, o.sizes = o.segs[1:], o.sizes[1:]
		o.headOff = 0
	}
	return o.writeCursor()
}

// reset removes every segment once all messages are published.
func (o *outbox) reset() error {
	for _, f := range []*os.File{o.headFile, o.tail} {
		if f != nil {
			_ = f.Close()
		}
	}
	o.headFile, o.tail = nil, nil
	for _, seq := range o.segs {
		if err := os.Remove(o.segPath(seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove published audit outbox segment: %w", err)
		}
	}
	o.segs, o.sizes = nil, nil
	o.headOff, o.count, o.bytes, o.head = 0, 0, 0, nil
	return o.writeCursor()
}

func (o *outbox) writeCursor() error {
	var buf [16]byte
	seq := o.nextSeq
	if len(o.segs) > 0 {
		seq = o.segs[0]
	}
	binary.BigEndian.PutUint64(buf[:8], seq)
	binary.BigEndian.PutUint64(buf[8:], uint64(o.headOff))
	if _, err := o.cursor.WriteAt(buf[:], 0); err != nil {
		return fmt.Errorf("write audit outbox cursor: %w", err)
	}
	return nil
}

// close releases the files and the directory lock; pending messages stay.
func (o *outbox) close() {
	for _, f := range []*os.File{o.headFile, o.tail, o.cursor, o.lock} {
		if f != nil {
			_ = f.Close()
		}
	}
	o.headFile, o.tail, o.cursor, o.lock = nil, nil, nil, nil
}
