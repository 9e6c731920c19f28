package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestRestartKeepsURLAndData(t *testing.T) {
	url, srv := Start(t)
	nc, js := Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("put: %v", err)
	}
	reconnected := nc.StatusChanged(nats.CONNECTED)
	srv.Restart()
	if srv.URL() != url {
		t.Errorf("URL after restart = %s, want %s", srv.URL(), url)
	}
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("client did not reconnect")
	}
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Errorf("after restart: %v, %v; want the value written before", e, err)
	}
	srv.Stop()
	srv.Stop() // stopping twice is harmless
}
