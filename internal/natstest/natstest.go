// Package natstest starts an embedded nats-server with JetStream on file
// storage for tests, and restarts it in place to test recovery. Any package
// that talks to NATS uses it in its tests instead of an external server.
package natstest

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyTimeout bounds how long Start and Restart wait for the server to accept
// clients.
const readyTimeout = 10 * time.Second

// Server is an embedded nats-server with JetStream, listening on a loopback
// port and storing its data in a directory that lives as long as the test.
// It is shut down when the test ends.
type Server struct {
	t    testing.TB
	mu   sync.Mutex
	opts *server.Options // port fixed after the first start, so restarts keep it
	srv  *server.Server  // nil while stopped
	url  string
}

// Start starts a server with JetStream on a random loopback port and a
// t.TempDir store directory, and returns its client URL. It fails the test if
// the server does not come up.
func Start(t testing.TB) (string, *Server) {
	t.Helper()
	s := &Server{
		t: t,
		opts: &server.Options{
			ServerName: "natstest",
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			DontListen: false,
		},
	}
	if err := s.start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s.url, s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	srv, err := server.NewServer(s.opts.Clone())
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		return fmt.Errorf("not ready for connections after %s", readyTimeout)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		return fmt.Errorf("unexpected listen address %v", srv.Addr())
	}
	s.opts.Port = addr.Port
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", addr.Port)
	s.srv = srv
	return nil
}

// URL returns the client URL; it stays the same across restarts.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// StoreDir returns the JetStream store directory; it stays the same across
// restarts.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Stop shuts the server down and waits until it has released its port and
// store. Stopping a stopped server does nothing. Clients see a disconnect.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart stops the server if it runs, then starts it again on the same port
// with the same store directory, so streams, KV buckets and their data
// survive and clients reconnect to the same URL. It fails the test if the
// server does not come back.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart nats-server on %s: %v", s.opts.StoreDir, err)
	}
}

// Connect connects to url with settings fit for restart tests: it reconnects
// forever, every 25ms, and buffers publishes while disconnected. The
// connection is closed when the test ends.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.Name(t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(25 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
	}, opts...)...)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream context on %s: %v", url, err)
	}
	return nc, js
}
