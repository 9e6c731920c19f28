package aws

import (
	"os"
	"testing"
)

// TestMain drops AWS_CA_BUNDLE: every test talks plain HTTP to the emulator
// on loopback, and with the variable set each SDK configuration (every env
// and every platform a test builds) parses the whole bundle again, which
// under -race was about a quarter of the package's test time.
func TestMain(m *testing.M) {
	if err := os.Unsetenv("AWS_CA_BUNDLE"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}
