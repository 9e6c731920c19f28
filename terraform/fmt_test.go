package terraform

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclwrite"
)

// TestFilesAreInCanonicalFormat checks the layout `terraform fmt -check`
// checks: terraform fmt is hclwrite.Format (indentation, alignment of `=`,
// spacing) plus a few rewrites of legacy syntax. Terraform itself cannot be
// fetched here as a binary (`make tf-fmt` builds 1.5.7 from source for the
// full check), so CI runs the formatter it is built on.
func TestFilesAreInCanonicalFormat(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".tf") || strings.HasSuffix(p, ".tfvars") || strings.HasSuffix(p, ".tfvars.example")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil || len(files) < 10 {
		t.Fatalf("found %d Terraform files: %v", len(files), err)
	}
	for _, p := range files {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted (run terraform fmt): first difference at line %d", p, firstDifferentLine(src, got))
		}
	}
}

func firstDifferentLine(a, b []byte) int {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}
