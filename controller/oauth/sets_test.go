package oauth

import "testing"

// TestSameSetIgnoresOrderAndRepeats: drift detection compares the lists
// Databricks answers as sets, since it documents neither their order nor
// deduplication.
func TestSameSetIgnoresOrderAndRepeats(t *testing.T) {
	cases := []struct {
		name string
		a, b []string
		want bool
	}{
		{"equal", []string{"a", "b"}, []string{"a", "b"}, true},
		{"reordered", []string{"b", "a"}, []string{"a", "b"}, true},
		{"repeated", []string{"a", "a", "b"}, []string{"b", "a"}, true},
		{"both empty", nil, []string{}, true},
		{"missing one", []string{"a"}, []string{"a", "b"}, false},
		{"extra one", []string{"a", "b", "c"}, []string{"a", "b"}, false},
		{"empty against one", nil, []string{"a"}, false},
		{"case matters", []string{"https://A.example.com/cb"}, []string{"https://a.example.com/cb"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameSet(tc.a, tc.b); got != tc.want {
				t.Errorf("sameSet(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := sameSet(tc.b, tc.a); got != tc.want {
				t.Errorf("sameSet(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
			}
		})
	}
}
