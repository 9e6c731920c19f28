package store

import (
	"errors"
	"fmt"
	"strings"

	"github.com/servingapp/servingapp/api/v1alpha1"
)

// Errors returned by the Store, always wrapped with what was being done and to
// which object; test for them with errors.Is.
var (
	// ErrNotFound: the object does not exist (or its namespace/name cannot
	// name one).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a compare-and-set failed because the object changed since
	// the revision the caller based its write on, or another writer kept
	// winning. Read again and retry.
	ErrConflict = errors.New("conflict")
	// ErrAlreadyExists: a concurrent writer created the object first. It is
	// always returned together with ErrConflict.
	ErrAlreadyExists = errors.New("already exists")
	// ErrBeingDeleted: the object has a deletionTimestamp; it accepts no new
	// spec and no new finalizers until it is gone.
	ErrBeingDeleted = errors.New("being deleted")
	// ErrInvalid: the object failed validation; the error is an *InvalidError
	// carrying every field error.
	ErrInvalid = errors.New("invalid")
	// ErrInvalidSelector: a label selector could not be parsed.
	ErrInvalidSelector = errors.New("invalid label selector")
)

// InvalidError reports every validation problem of an object given to Apply.
// errors.Is(err, ErrInvalid) holds for it, and errors.As can extract the
// v1alpha1.FieldErrors it wraps.
type InvalidError struct {
	// Object is "<namespace>/<name>" as given (after defaulting).
	Object string
	// Errors holds one entry per problem, each with its field path.
	Errors v1alpha1.FieldErrors
}

func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.Error()
	}
	return fmt.Sprintf("apply %s: invalid: %s", e.Object, strings.Join(msgs, "; "))
}

// Unwrap returns the field errors.
func (e *InvalidError) Unwrap() error { return e.Errors }

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }
