package emulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// User is a workspace user who can sign in on the login page.
type User struct {
	// Email is the user name and the login identity.
	Email string
	// DisplayName is shown on the login page and in the name claim.
	DisplayName string
	// ID is the SCIM id; empty means one derived from the email.
	ID string
}

// DefaultUsers returns the dev users alice@example.com and bob@example.com.
func DefaultUsers() []User {
	return []User{
		{Email: "alice@example.com", DisplayName: "Alice Example"},
		{Email: "bob@example.com", DisplayName: "Bob Example"},
	}
}

// givenFamily splits a display name into given and family names.
func (u *User) givenFamily() (string, string) {
	given, family, _ := strings.Cut(strings.TrimSpace(u.DisplayName), " ")
	return given, strings.TrimSpace(family)
}

// ServicePrincipal is a machine identity using the client-credentials grant.
type ServicePrincipal struct {
	// ClientID is the OAuth client id (the application id).
	ClientID string
	// Secret is the OAuth secret.
	Secret string
	// DisplayName names the principal in SCIM Me.
	DisplayName string
	// AccountAdmin lets the principal call the account API.
	AccountAdmin bool
	// ID is the SCIM id; empty means one derived from the client id.
	ID string
}

type servicePrincipal struct {
	ServicePrincipal
	secretHash [32]byte
}

// AddUser adds or replaces a dev user.
func (e *Emulator) AddUser(u User) error {
	email := strings.ToLower(strings.TrimSpace(u.Email))
	if email == "" || !strings.Contains(email, "@") {
		return fmt.Errorf("emulator: add user: %q is not an email address", u.Email)
	}
	u.Email = email
	if u.DisplayName == "" {
		u.DisplayName = email
	}
	if u.ID == "" {
		u.ID = derivedID(email)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.users[email]; !ok {
		e.userOrder = append(e.userOrder, email)
	}
	e.users[email] = &u
	return nil
}

// Users returns the dev users in the order they were added.
func (e *Emulator) Users() []User {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]User, 0, len(e.userOrder))
	for _, email := range e.userOrder {
		out = append(out, *e.users[email])
	}
	return out
}

// AddServicePrincipal adds or replaces a service principal.
func (e *Emulator) AddServicePrincipal(sp ServicePrincipal) error {
	if sp.ClientID == "" || sp.Secret == "" {
		return errors.New("emulator: add service principal: client id and secret are required")
	}
	if sp.DisplayName == "" {
		sp.DisplayName = sp.ClientID
	}
	if sp.ID == "" {
		sp.ID = derivedID(sp.ClientID)
	}
	stored := &servicePrincipal{ServicePrincipal: sp, secretHash: sha256.Sum256([]byte(sp.Secret))}
	stored.Secret = ""
	e.mu.Lock()
	e.sps[sp.ClientID] = stored
	e.mu.Unlock()
	return nil
}

// derivedID makes a stable numeric SCIM id from a name.
func derivedID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return strconv.FormatUint(binary.BigEndian.Uint64(sum[:8])>>12, 10)
}

func secretMatches(hash [32]byte, secret string) bool {
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(hash[:], got[:]) == 1
}

// handleMe serves SCIM Me for the token's principal.
func (e *Emulator) handleMe(w http.ResponseWriter, r *http.Request) {
	tok, ok := e.authenticate(w, r, audienceWorkspace)
	if !ok {
		return
	}
	if !tok.hasAPIScope() {
		writeAPIError(w, http.StatusForbidden, "PERMISSION_DENIED", "Provided OAuth token does not have required scopes")
		return
	}
	e.mu.Lock()
	var body map[string]any
	switch tok.kind {
	case principalUser:
		u, found := e.users[tok.principal]
		if found {
			given, family := u.givenFamily()
			body = map[string]any{
				"schemas":     []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
				"id":          u.ID,
				"userName":    u.Email,
				"displayName": u.DisplayName,
				"name":        map[string]string{"givenName": given, "familyName": family},
				"emails":      []map[string]any{{"value": u.Email, "type": "work", "primary": true}},
				"active":      true,
			}
		}
	case principalServicePrincipal:
		sp, found := e.sps[tok.principal]
		if found {
			body = map[string]any{
				"schemas":     []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
				"id":          sp.ID,
				"userName":    sp.ClientID,
				"displayName": sp.DisplayName,
				"active":      true,
			}
		}
	}
	e.mu.Unlock()
	if body == nil {
		writeAPIError(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "The principal of this token no longer exists.")
		return
	}
	writeJSON(w, http.StatusOK, body)
}
