// Package natsembed runs a nats-server with JetStream inside the current
// process. Dev mode uses it so that nothing but this binary is needed; tests
// use internal/natstest, which wraps the same server for testing.T.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// Host and Port to listen on; Port 0 picks a free port. Default 127.0.0.1.
	Host string
	Port int
	// StoreDir keeps JetStream data; it survives restarts of the process.
	StoreDir string
	// ReadyTimeout bounds the wait for the server to accept clients (default 10s).
	ReadyTimeout time.Duration
}

// Server is a running embedded nats-server.
type Server struct {
	srv *server.Server
	url string
}

// Start starts a server with JetStream on file storage in opts.StoreDir.
func Start(opts Options) (*Server, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	if opts.StoreDir == "" {
		return nil, errors.New("start embedded NATS: a store directory is required")
	}
	if err := os.MkdirAll(opts.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	} else if ln, err := net.Listen("tcp", net.JoinHostPort(opts.Host, fmt.Sprint(port))); err != nil {
		// nats-server would log and exit the process; say it plainly instead.
		return nil, fmt.Errorf("start embedded NATS: port %d on %s is taken (is another servingctl dev running?): %w", port, opts.Host, err)
	} else {
		_ = ln.Close()
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "servingapp-dev",
		Host:       opts.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(opts.ReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("start embedded NATS: not ready after %s", opts.ReadyTimeout)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		return nil, fmt.Errorf("start embedded NATS: unexpected listen address %v", srv.Addr())
	}
	return &Server{srv: srv, url: fmt.Sprintf("nats://%s", net.JoinHostPort(opts.Host, fmt.Sprint(addr.Port)))}, nil
}

// URL is the client URL, nats://host:port.
func (s *Server) URL() string { return s.url }

// Shutdown stops the server and waits for it to finish, flushing JetStream.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}
