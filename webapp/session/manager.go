package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Session is what the web app keeps about a signed-in user. It lives only in
// the store, sealed (see record); the browser holds nothing but the random
// session id. Times are kept to the millisecond.
type Session struct {
	// Subject, Email and Name identify the user (from the ID token, or SCIM Me).
	Subject string
	Email   string
	Name    string
	// UserID is the Databricks user id when known, else the subject.
	UserID string
	// AccessToken and its expiry, and the refresh token (rotated ones are
	// saved on every refresh).
	AccessToken  string
	AccessExpiry time.Time
	RefreshToken string
	// Created, LastSeen and Expires drive the idle and absolute timeouts.
	Created  time.Time
	LastSeen time.Time
	Expires  time.Time
	// CSRF is the token every form and API call of this session must carry.
	CSRF string
	// PendingID names a request typed before login, to run after it.
	PendingID string
	// RefreshingBy and RefreshingUntil are a replica's claim to refresh the
	// tokens, so replicas never refresh one session at the same time.
	RefreshingBy    string
	RefreshingUntil time.Time
}

// Expiry reasons returned by Session.Expired.
const (
	ExpiredIdle     = "idle_timeout"
	ExpiredAbsolute = "absolute_timeout"
)

// Expired reports whether the session has ended at now, and why.
func (s *Session) Expired(now time.Time, idle time.Duration) (string, bool) {
	switch {
	case !now.Before(s.Expires):
		return ExpiredAbsolute, true
	case idle > 0 && !now.Before(s.LastSeen.Add(idle)):
		return ExpiredIdle, true
	}
	return "", false
}

// Pending is a request typed before login, kept server-side across the login.
type Pending struct {
	// Text is the summarizer input.
	Text string
	// Expires is when it is gone; stores that can forget records by then.
	Expires time.Time
}

// pendingRecord is the sealed form of a Pending. The text is bytes (base64
// in JSON), so a record is at most a third larger than its text whatever the
// text holds; as a JSON string, control characters and invalid UTF-8 would
// take six bytes each. Text and Exp are the fields of records written before.
type pendingRecord struct {
	Data    []byte    `json:"b,omitempty"`
	Expires int64     `json:"x,omitempty"`
	Text    string    `json:"text,omitempty"`
	Exp     time.Time `json:"exp,omitzero"`
}

// Loaded is a session read from the store, with what is needed to write it back.
type Loaded struct {
	// ID is the raw session id (the cookie value). Never log it.
	ID       string
	Session  Session
	Revision uint64
}

// Manager reads and writes sessions and pending requests in a Store, keyed by
// a hash of their random ids and sealed with the session key. It is safe for
// concurrent use.
type Manager struct {
	store     Store
	sealer    *Sealer
	rand      io.Reader
	retention time.Duration
}

// NewManager returns a manager over store; key is the app's KeySize-byte
// session key; rand supplies ids and nonces (nil means crypto/rand).
func NewManager(store Store, key []byte, rand io.Reader) (*Manager, error) {
	sealer, err := NewSealer(key, "session records", rand)
	if err != nil {
		return nil, err
	}
	return &Manager{store: store, sealer: sealer, rand: rand}, nil
}

// SetRetention makes the store keep a session's record for d past the
// session's Expires; zero (the default) lets it forget the record at
// Expires. Without it, a request just after the absolute timeout finds no
// record, as if the cookie were unknown, and the session's ending is never
// noticed or audited. Call it before the manager is used.
func (m *Manager) SetRetention(d time.Duration) { m.retention = max(0, d) }

// storeExpiry is when the store may forget the record of s.
func (m *Manager) storeExpiry(s *Session) time.Time {
	if s.Expires.IsZero() {
		return s.Expires
	}
	return s.Expires.Add(m.retention)
}

// Store returns the underlying store.
func (m *Manager) Store() Store { return m.store }

// idBytes is the entropy of session and pending ids.
const idBytes = 32

// NewID returns a random id (256 bits, base64url).
func (m *Manager) NewID() (string, error) {
	b := make([]byte, idBytes)
	var err error
	if m.rand == nil {
		_, err = rand.Read(b)
	} else {
		_, err = io.ReadFull(m.rand, b)
	}
	if err != nil {
		return "", fmt.Errorf("make session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ValidID reports whether id has the shape NewID produces, so malformed
// cookies never reach the store.
func ValidID(id string) bool {
	if len(id) != base64.RawURLEncoding.EncodedLen(idBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

// Key returns the store key of a session id: "s." + hex SHA-256 of the id.
func Key(id string) string { return hashKey("s.", id) }

func pendingKey(id string) string { return hashKey("p.", id) }

func hashKey(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	return prefix + hex.EncodeToString(sum[:])
}

// AuditID returns the hashed session id put in audit events and logs. It is
// derived differently from the store key, so audit readers learn neither the
// id nor the key.
func AuditID(id string) string {
	sum := sha256.Sum256([]byte("servingapp audit session\x00" + id))
	return hex.EncodeToString(sum[:16])
}

// record is the sealed form of a Session: times as Unix milliseconds, which
// decode several times faster than RFC 3339 strings on every request.
type record struct {
	Subject         string `json:"sub"`
	Email           string `json:"email,omitempty"`
	Name            string `json:"name,omitempty"`
	UserID          string `json:"uid,omitempty"`
	AccessToken     string `json:"at"`
	AccessExpiry    int64  `json:"atx"`
	RefreshToken    string `json:"rt,omitempty"`
	Created         int64  `json:"c"`
	LastSeen        int64  `json:"s"`
	Expires         int64  `json:"x"`
	CSRF            string `json:"csrf"`
	PendingID       string `json:"p,omitempty"`
	RefreshingBy    string `json:"rby,omitempty"`
	RefreshingUntil int64  `json:"ru,omitempty"`
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func toRecord(s *Session) record {
	return record{
		Subject: s.Subject, Email: s.Email, Name: s.Name, UserID: s.UserID,
		AccessToken: s.AccessToken, AccessExpiry: millis(s.AccessExpiry), RefreshToken: s.RefreshToken,
		Created: millis(s.Created), LastSeen: millis(s.LastSeen), Expires: millis(s.Expires),
		CSRF: s.CSRF, PendingID: s.PendingID, RefreshingBy: s.RefreshingBy, RefreshingUntil: millis(s.RefreshingUntil),
	}
}

func (r *record) session() Session {
	return Session{
		Subject: r.Subject, Email: r.Email, Name: r.Name, UserID: r.UserID,
		AccessToken: r.AccessToken, AccessExpiry: fromMillis(r.AccessExpiry), RefreshToken: r.RefreshToken,
		Created: fromMillis(r.Created), LastSeen: fromMillis(r.LastSeen), Expires: fromMillis(r.Expires),
		CSRF: r.CSRF, PendingID: r.PendingID, RefreshingBy: r.RefreshingBy, RefreshingUntil: fromMillis(r.RefreshingUntil),
	}
}

func (m *Manager) seal(key string, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return m.sealer.Seal(plain, []byte(key))
}

func (m *Manager) open(key string, sealed []byte, v any) error {
	plain, err := m.sealer.Open(sealed, []byte(key))
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}

// Create stores s under a new random id.
func (m *Manager) Create(ctx context.Context, s Session) (*Loaded, error) {
	for range 3 {
		id, err := m.NewID()
		if err != nil {
			return nil, err
		}
		key := Key(id)
		value, err := m.seal(key, toRecord(&s))
		if err != nil {
			return nil, fmt.Errorf("seal session: %w", err)
		}
		rev, err := m.store.Create(ctx, key, value, m.storeExpiry(&s))
		if errors.Is(err, ErrExists) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create session: %w", err)
		}
		return &Loaded{ID: id, Session: s, Revision: rev}, nil
	}
	return nil, errors.New("create session: ids keep colliding; is the random source broken?")
}

// Load reads the session with id; ErrNotFound when there is none (or the
// record cannot be opened with this key).
func (m *Manager) Load(ctx context.Context, id string) (*Loaded, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	key := Key(id)
	value, rev, err := m.store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	var rec record
	if err := m.open(key, value, &rec); err != nil {
		return nil, fmt.Errorf("open session record: %w: %w", ErrNotFound, err)
	}
	return &Loaded{ID: id, Session: rec.session(), Revision: rev}, nil
}

// Save writes l.Session back if the record is still at l.Revision and
// advances l.Revision; ErrConflict when another write came first.
func (m *Manager) Save(ctx context.Context, l *Loaded) error {
	key := Key(l.ID)
	value, err := m.seal(key, toRecord(&l.Session))
	if err != nil {
		return fmt.Errorf("seal session: %w", err)
	}
	rev, err := m.store.Update(ctx, key, value, l.Revision, m.storeExpiry(&l.Session))
	if err != nil {
		return err
	}
	l.Revision = rev
	return nil
}

// Delete removes the session with id.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return nil
	}
	return m.store.Delete(ctx, Key(id))
}

// PutPending stores a request typed before login and returns its id;
// ErrFull when the store has no room.
func (m *Manager) PutPending(ctx context.Context, p Pending) (string, error) {
	id, err := m.NewID()
	if err != nil {
		return "", err
	}
	key := pendingKey(id)
	value, err := m.seal(key, pendingRecord{Data: []byte(p.Text), Expires: millis(p.Expires)})
	if err != nil {
		return "", fmt.Errorf("seal pending request: %w", err)
	}
	if _, err := m.store.Create(ctx, key, value, p.Expires); err != nil {
		return "", fmt.Errorf("store pending request: %w", err)
	}
	return id, nil
}

// DeletePending removes a pending request (one replaced by a newer one).
func (m *Manager) DeletePending(ctx context.Context, id string) error {
	if !ValidID(id) {
		return nil
	}
	return m.store.Delete(ctx, pendingKey(id))
}

// TakePending reads and deletes a pending request; ErrNotFound when it is
// gone or expired at now.
func (m *Manager) TakePending(ctx context.Context, id string, now time.Time) (Pending, error) {
	if !ValidID(id) {
		return Pending{}, ErrNotFound
	}
	key := pendingKey(id)
	value, _, err := m.store.Get(ctx, key)
	if err != nil {
		return Pending{}, err
	}
	if err := m.store.Delete(ctx, key); err != nil {
		return Pending{}, err
	}
	var rec pendingRecord
	if err := m.open(key, value, &rec); err != nil {
		return Pending{}, fmt.Errorf("open pending request: %w: %w", ErrNotFound, err)
	}
	p := Pending{Text: string(rec.Data), Expires: fromMillis(rec.Expires)}
	if rec.Data == nil && rec.Expires == 0 {
		p = Pending{Text: rec.Text, Expires: rec.Exp}
	}
	if !now.Before(p.Expires) {
		return Pending{}, ErrNotFound
	}
	return p, nil
}
