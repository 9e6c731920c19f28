package emulator

// HasEndpoint reports whether a serving endpoint named name exists.
func (e *Emulator) HasEndpoint(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.endpoints[name]
	return ok
}
