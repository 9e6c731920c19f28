package local

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Errors of Secrets.
var (
	ErrSecretNotFound = errors.New("secret not found")
	ErrSecretExists   = errors.New("secret already exists")
)

// Secrets is dev mode's secret store: names to values, in memory, each
// remembering the app that owns it (like the servingapp.io/app tag in AWS).
type Secrets struct {
	mu      sync.Mutex
	entries map[string]secret
}

type secret struct {
	value []byte
	owner string
	tags  map[string]string
}

// Create stores a new secret owned by owner ("" for secrets put in by hand).
func (s *Secrets) Create(name string, value []byte, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = map[string]secret{}
	}
	if _, ok := s.entries[name]; ok {
		return fmt.Errorf("create secret %s: %w", name, ErrSecretExists)
	}
	s.entries[name] = secret{value: slices.Clone(value), owner: owner}
	return nil
}

// Put creates or replaces a secret's value, keeping its owner when it exists.
func (s *Secrets) Put(name string, value []byte, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = map[string]secret{}
	}
	if old, ok := s.entries[name]; ok && owner == "" {
		owner = old.owner
	}
	s.entries[name] = secret{value: slices.Clone(value), owner: owner}
}

// Get returns a secret's value.
func (s *Secrets) Get(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	if !ok {
		return nil, fmt.Errorf("secret %s: %w", name, ErrSecretNotFound)
	}
	return slices.Clone(e.value), nil
}

// Delete removes a secret; a missing one is not an error.
func (s *Secrets) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, name)
}

// DeleteOwned removes every secret owned by owner.
func (s *Secrets) DeleteOwned(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		if e.owner == owner {
			delete(s.entries, k)
		}
	}
}

// Release forgets owner's ownership, leaving the secrets (deletionPolicy Retain).
func (s *Secrets) Release(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		if e.owner == owner {
			e.owner = ""
			s.entries[k] = e
		}
	}
}

// Owned lists the names of owner's secrets.
func (s *Secrets) Owned(owner string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k, e := range s.entries {
		if e.owner == owner {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Tags returns a copy of a secret's tags.
func (s *Secrets) Tags(name string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	if !ok {
		return nil, fmt.Errorf("secret %s: %w", name, ErrSecretNotFound)
	}
	return maps.Clone(e.tags), nil
}

// SetTags adds or replaces tags of a secret.
func (s *Secrets) SetTags(name string, tags map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	if !ok {
		return fmt.Errorf("secret %s: %w", name, ErrSecretNotFound)
	}
	if e.tags == nil {
		e.tags = map[string]string{}
	}
	maps.Copy(e.tags, tags)
	s.entries[name] = e
	return nil
}
