package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// source is one object read from a file, with where it came from.
type source struct {
	app  *v1.ServingApp
	file string
}

// readManifests loads, defaults and validates every object in paths (files,
// directories of *.yaml, *.yml and *.json, or "-" for stdin). It reports every
// problem in every file at once, each prefixed by its file.
func readManifests(paths []string, stdin io.Reader) ([]source, error) {
	if len(paths) == 0 {
		return nil, usagef("give at least one -f FILE, DIR or -")
	}
	var (
		out      []source
		problems []string
	)
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			var data []byte
			if f == "-" {
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(f)
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			name := f
			if f == "-" {
				name = "<stdin>"
			}
			apps, err := v1.Load(data)
			var derrs v1.DecodeErrors
			switch {
			case errors.As(err, &derrs):
				for _, e := range derrs {
					problems = append(problems, name+": "+e.Error())
				}
				continue
			case err != nil:
				problems = append(problems, name+": "+err.Error())
				continue
			}
			for _, a := range apps {
				out = append(out, source{app: a, file: name})
			}
		}
	}
	if dup := duplicateObjects(out); dup != "" {
		problems = append(problems, dup)
	}
	if len(problems) > 0 {
		return nil, invalidError{problems}
	}
	return out, nil
}

// invalidError lists every problem found in the manifests.
type invalidError struct{ problems []string }

func (e invalidError) Error() string {
	return fmt.Sprintf("%d problem(s) found:\n  %s", len(e.problems), strings.Join(e.problems, "\n  "))
}

func expand(p string) ([]string, error) {
	if p == "-" {
		return []string{"-"}, nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", p, err)
	}
	var files []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	slices.Sort(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("directory %s holds no *.yaml, *.yml or *.json file", p)
	}
	return files, nil
}

func duplicateObjects(srcs []source) string {
	seen := map[string]string{}
	for _, s := range srcs {
		k := s.app.NamespacedName()
		if first, ok := seen[k]; ok {
			return fmt.Sprintf("%s: %s is defined twice (first in %s)", s.file, k, first)
		}
		seen[k] = s.file
	}
	return ""
}
