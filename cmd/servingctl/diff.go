package main

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// editable is what an admin controls: labels, annotations and spec. Status
// and store-managed metadata never show up as a difference.
type editable struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Spec        v1.ServingAppSpec `json:"spec"`
}

// specDiff returns a unified-style line diff between the stored object (nil
// when absent) and the wanted one, or "" when they match.
func specDiff(name string, stored, wanted *v1.ServingApp) (string, error) {
	render := func(a *v1.ServingApp) ([]string, error) {
		if a == nil {
			return nil, nil
		}
		b, err := yaml.Marshal(editable{a.Metadata.Labels, a.Metadata.Annotations, a.Spec})
		if err != nil {
			return nil, err
		}
		return strings.Split(strings.TrimRight(string(b), "\n"), "\n"), nil
	}
	from, err := render(stored)
	if err != nil {
		return "", err
	}
	to, err := render(wanted)
	if err != nil {
		return "", err
	}
	ops := lineDiff(from, to)
	changed := false
	for _, op := range ops {
		if op[0] != ' ' {
			changed = true
			break
		}
	}
	if !changed {
		return "", nil
	}
	var b strings.Builder
	fromName := "stored/" + name
	if stored == nil {
		fromName = "/dev/null (not stored)"
	}
	fmt.Fprintf(&b, "--- %s\n+++ file/%s\n", fromName, name)
	for _, op := range ops {
		b.WriteString(op)
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// lineDiff is a longest-common-subsequence diff; specs are small, so the
// quadratic table costs nothing.
func lineDiff(a, b []string) []string {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out = append(out, " "+a[i])
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, "-"+a[i])
			i++
		default:
			out = append(out, "+"+b[j])
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, "-"+a[i])
	}
	for ; j < m; j++ {
		out = append(out, "+"+b[j])
	}
	return out
}
