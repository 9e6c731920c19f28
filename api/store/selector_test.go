package store

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSelectorMatches(t *testing.T) {
	gold := map[string]string{"team": "analytics", "tier": "gold", "example.com/owner": "data"}
	plain := map[string]string{"team": "support"}
	cases := []struct {
		selector  string
		wantGold  bool
		wantPlain bool
	}{
		{"", true, true},
		{"   ", true, true},
		{"team=analytics", true, false},
		{"team==analytics", true, false},
		{"team = analytics", true, false},
		{"team!=analytics", false, true},
		{"tier!=gold", false, true}, // absent counts as not equal
		{"tier", true, false},
		{"!tier", false, true},
		{"! tier", false, true},
		{"tier in (gold,silver)", true, false},
		{"tier in(gold)", true, false},
		{"tier in ( silver , gold )", true, false},
		{"tier notin (gold)", false, true}, // absent counts as not in
		{"tier notin (silver)", true, true},
		{"team in (analytics,support),tier", true, false},
		{"team=analytics, tier=gold", true, false},
		{"team=analytics,tier=silver", false, false},
		{"example.com/owner=data", true, false},
		{"tier=", false, false}, // label set to the empty value
		{"tier!=", true, true},
	}
	for _, c := range cases {
		sel, err := ParseSelector(c.selector)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", c.selector, err)
			continue
		}
		if got := sel.Matches(gold); got != c.wantGold {
			t.Errorf("%q matches %v = %v, want %v", c.selector, gold, got, c.wantGold)
		}
		if got := sel.Matches(plain); got != c.wantPlain {
			t.Errorf("%q matches %v = %v, want %v", c.selector, plain, got, c.wantPlain)
		}
	}
}

func TestParseSelectorRejects(t *testing.T) {
	for _, s := range []string{
		"a=b,",                         // stray comma
		",a=b",                         // stray comma
		"a=b,,c=d",                     // empty requirement
		"=b",                           // missing key
		"a=b=c",                        // value with '='
		"a in b",                       // values not parenthesized
		"a in (b",                      // missing ')'
		"a in b)",                      // ')' without '('
		"a in ()",                      // empty value list
		"a in ((b))",                   // nested parentheses
		"a notin",                      // no values
		"a ~ b",                        // unknown operator
		"a!b",                          // unknown operator
		"a b",                          // two keys
		"-a=b",                         // key starting with '-'
		"a=-b",                         // value starting with '-'
		"a=b c",                        // space in value
		"Example.com/a=b",              // prefix not a DNS subdomain
		"!",                            // negation without key
		"a in (b,c d)",                 // space inside a value
		strings.Repeat("k", 64) + "=x", // key longer than 63 characters
	} {
		_, err := ParseSelector(s)
		if !errors.Is(err, ErrInvalidSelector) {
			t.Errorf("ParseSelector(%q) = %v, want ErrInvalidSelector", s, err)
		}
	}
}
