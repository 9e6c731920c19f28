package aws

import (
	"os"
	"testing"

	"github.com/servingapp/servingapp/controller/config"
)

// TestConfigFromTakesEverySettingOfTheExample: the platform gets what the
// documented example configures, lockout budget included.
func TestConfigFromTakesEverySettingOfTheExample(t *testing.T) {
	b, err := os.ReadFile("../../manifests/controller.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	c.AWS.Lockout = config.LockoutRules{RulesPerApp: 7, Reserve: 3}
	got := ConfigFrom(c)
	if got.BlockRulesPerApp != 7 || got.BlockRuleReserve != 3 {
		t.Fatalf("lockout budget %d/%d, want 7/3", got.BlockRulesPerApp, got.BlockRuleReserve)
	}
	if got.PriorityMin != c.AWS.RulePriorities.Min || got.PriorityMax != c.AWS.RulePriorities.Max ||
		got.ListenerARN != c.AWS.ListenerARN || got.MaxAttempts != c.AWS.MaxAttempts || got.Burst != c.AWS.RateLimits.Burst {
		t.Fatalf("ConfigFrom(%+v) = %+v", c.AWS, got)
	}
}
