package terraform

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// buildCommand is how every image builds its binary, word for word in both
// Dockerfiles and in docs/deploy-aws.md. TestBinariesAreStatic builds with
// the flags it reads from the Dockerfiles.
const buildCommand = `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}"`

// finalImage is the base of both images: no shell, no libc, uid 65532.
const finalImage = "gcr.io/distroless/static-debian12:nonroot"

// images maps each Dockerfile to the binary (and ./cmd package) it builds.
var images = map[string]string{
	"Dockerfile.controller": "servingapp-controller",
	"Dockerfile.webapp":     "servingapp-webapp",
}

// dockerfile is a Dockerfile as instructions, continuation lines joined.
type dockerfile struct {
	stages [][]instruction
}

type instruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var df dockerfile
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.Join(strings.Fields(args), " ")}
		if in.cmd == "FROM" {
			df.stages = append(df.stages, nil)
		}
		if len(df.stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s: %s before the first FROM", path, in.cmd)
			}
			return
		}
		df.stages[len(df.stages)-1] = append(df.stages[len(df.stages)-1], in)
	}
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return df
}

func (s dockerfileStage) find(cmd string) []string {
	var out []string
	for _, in := range s {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

type dockerfileStage []instruction

func TestDockerfilesBuildStaticNonRootImagesWithTheDocumentedFlags(t *testing.T) {
	docs, err := os.ReadFile("../docs/deploy-aws.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(docs, []byte(buildCommand)) {
		t.Errorf("docs/deploy-aws.md does not show the build command %s", buildCommand)
	}
	for file, bin := range images {
		t.Run(file, func(t *testing.T) {
			df := parseDockerfile(t, filepath.Join("..", file))
			if len(df.stages) != 2 {
				t.Fatalf("%d stages, want 2 (builder, final)", len(df.stages))
			}
			build, final := dockerfileStage(df.stages[0]), dockerfileStage(df.stages[1])

			if from := build[0].args; !regexp.MustCompile(`(^| )golang:1\.26[-.:\w]* AS build$`).MatchString(from) {
				t.Errorf("builder stage FROM %q, want golang:1.26… AS build", from)
			}
			runs := strings.Join(build.find("RUN"), "\n")
			wantBuild := buildCommand + " -o /out/" + bin + " ./cmd/" + bin
			if !strings.Contains(runs, wantBuild) {
				t.Errorf("no RUN with %q in:\n%s", wantBuild, runs)
			}
			if !slices.ContainsFunc(build.find("ARG"), func(a string) bool { return strings.HasPrefix(a, "VERSION") }) {
				t.Error("no ARG VERSION in the builder stage")
			}

			if from := final[0].args; from != finalImage {
				t.Errorf("final stage FROM %q, want %s", from, finalImage)
			}
			if users := final.find("USER"); len(users) != 1 || (users[0] != "nonroot:nonroot" && users[0] != "65532:65532") {
				t.Errorf("final stage USER %q, want nonroot:nonroot", users)
			}
			if copies := final.find("COPY"); !slices.Contains(copies, "--from=build /out/"+bin+" /"+bin) {
				t.Errorf("final stage copies %q, want only the binary /%s", copies, bin)
			}
			if final.find("RUN") != nil {
				t.Error("the final stage runs commands; distroless has no shell")
			}
			hc := final.find("HEALTHCHECK")
			if len(hc) != 1 || !strings.HasSuffix(hc[0], fmt.Sprintf(`CMD ["/%s", "healthcheck"]`, bin)) {
				t.Errorf("HEALTHCHECK %q, want the binary's own healthcheck subcommand in exec form", hc)
			}
			if ep := final.find("ENTRYPOINT"); len(ep) != 1 || ep[0] != fmt.Sprintf(`["/%s"]`, bin) {
				t.Errorf("ENTRYPOINT %q, want [\"/%s\"]", ep, bin)
			}
		})
	}
}

// dockerignore reads ../.dockerignore into its patterns.
func dockerignore(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

func TestDockerignoreKeepsSecretsOutAndLetsEveryBuiltPackageIn(t *testing.T) {
	patterns := dockerignore(t)
	if len(patterns) == 0 || patterns[0] != "*" {
		t.Fatalf(".dockerignore must start by excluding everything (*), got %q", patterns)
	}
	allowed := map[string]bool{}
	for _, p := range patterns[1:] {
		if !strings.HasPrefix(p, "!") {
			continue
		}
		p = strings.TrimSuffix(strings.TrimPrefix(p, "!"), "/")
		if strings.Contains(p, "*") || strings.Contains(p, "/") {
			t.Errorf(".dockerignore re-includes %q: re-include whole top-level entries only", p)
		}
		allowed[p] = true
	}
	for _, secret := range []string{"terraform", ".git", "bin", ".servingapp"} {
		if allowed[secret] {
			t.Errorf(".dockerignore lets %s into the build context", secret)
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !allowed[f] {
			t.Errorf(".dockerignore keeps %s out; the build needs it", f)
		}
	}

	// Every package the binaries are built from, and every file they embed,
	// must be in the context.
	out := goCmd(t, "list", "-deps", "-json=ImportPath,Dir,Module,EmbedFiles", "./cmd/...")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath string
			Dir        string
			Module     *struct{ Main bool }
			EmbedFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		top := strings.Split(filepath.ToSlash(rel), "/")[0]
		if !allowed[top] {
			t.Errorf("%s is built into the images but .dockerignore keeps %s/ out", p.ImportPath, top)
		}
		for _, f := range p.EmbedFiles {
			if strings.Contains("/"+f, "/testdata/") || strings.HasSuffix(f, "_test.go") {
				t.Errorf("%s embeds %s, which .dockerignore keeps out", p.ImportPath, f)
			}
		}
	}
}

// TestBinariesAreStatic builds every command under cmd/ exactly as the
// Dockerfiles do and checks that it is a static executable (no program
// interpreter, no shared libraries), so it runs on distroless/static. It
// also checks the version stamp of the binaries that become images.
func TestBinariesAreStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every command (a minute or more with a cold cache)")
	}
	flags := buildFlagsFromDockerfile(t)
	const stamp = "v0.0.0-statictest"
	for i, f := range flags {
		flags[i] = strings.ReplaceAll(f, "${VERSION}", stamp)
	}
	mains := strings.Fields(string(goCmd(t, "list", "-f", "{{if eq .Name \"main\"}}{{.Dir}}{{end}}", "./cmd/...")))
	if len(mains) == 0 {
		t.Fatal("no commands under cmd/")
	}
	for _, dir := range mains {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), name)
			args := append(append([]string{"build"}, flags...), "-o", bin, "./cmd/"+name)
			cmd := exec.Command(goBinary(t), args...)
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s has a program interpreter: it is dynamically linked", name)
				}
				if p.Type == elf.PT_DYNAMIC {
					t.Errorf("%s has a dynamic section", name)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("%s needs shared libraries %v", name, libs)
			}

			if _, image := imageOf(name); !image {
				return
			}
			if !declaresVersion(t, dir) {
				t.Skipf("cmd/%s declares no package-level `var version string`: -X main.version does nothing, so the image cannot report its version", name)
			}
			data, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte(stamp)) {
				t.Errorf("%s: -X main.version=%s did not stamp the binary", name, stamp)
			}
		})
	}
}

// buildFlagsFromDockerfile returns the go build flags of the Dockerfiles,
// split into arguments, after checking both Dockerfiles agree.
func buildFlagsFromDockerfile(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`CGO_ENABLED=0 go build (.*?) -o `)
	var found string
	for file := range images {
		df := parseDockerfile(t, filepath.Join("..", file))
		m := re.FindStringSubmatch(strings.Join(dockerfileStage(df.stages[0]).find("RUN"), "\n"))
		if m == nil {
			t.Fatalf("%s: no CGO_ENABLED=0 go build … -o", file)
		}
		if found != "" && m[1] != found {
			t.Fatalf("the Dockerfiles build with different flags: %q and %q", found, m[1])
		}
		found = m[1]
	}
	return splitWords(t, found)
}

// splitWords splits s like a POSIX shell does for plain words and double
// quotes, which is all the build flags use.
func splitWords(t *testing.T, s string) []string {
	t.Helper()
	if strings.ContainsAny(strings.ReplaceAll(s, "${VERSION}", ""), "$'\\`") {
		t.Fatalf("build flags %q use shell syntax this test does not read", s)
	}
	var out []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case r == ' ' && !inQuote:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inQuote {
		t.Fatalf("unbalanced quotes in %q", s)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

func imageOf(bin string) (string, bool) {
	for file, b := range images {
		if b == bin {
			return file, true
		}
	}
	return "", false
}

// declaresVersion reports whether the main package in dir declares a
// package-level variable named version.
func declaresVersion(t *testing.T, dir string) bool {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					if n.Name == "version" {
						return true
					}
				}
			}
		}
	}
	return false
}

func goBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	return p
}

// goCmd runs the go command in the module root and returns its stdout.
func goCmd(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(goBinary(t), args...)
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}
