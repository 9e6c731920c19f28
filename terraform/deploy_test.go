package terraform

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The deploy.sh tests run the real script against stub terraform, aws,
// docker, go and git commands that log their arguments and answer like the
// real ones, so the order of the steps, reruns and failure handling are
// checked without AWS.

// stubs are bash scripts, one per command. STUB_FAIL names a command prefix
// ("terraform apply", "aws sts") that fails; STUB_IMAGES_EXIST makes ECR
// report the tag present; STUB_ROLLOUT=FAILED fails the controller rollout;
// STUB_BACKUP makes Terraform know the auth bundle's backup secret.
var stubs = map[string]string{
	"terraform": `
[[ $1 == -chdir=* ]] && shift
fail_if "terraform $1"
case $1 in
version) echo "Terraform v1.5.7" ;;
output)
	case "$*" in
	*nats_auth_bundle_secret_arn*) [ -n "${STUB_BACKUP:-}" ] && printf arn:aws:secretsmanager:eu-west-1:1:secret:x-platform/nats/auth-bundle || { echo "Warning: No outputs found" >&2; exit 1; } ;;
	*cluster_name*) printf servingapp ;;
	*controller_service_name*) printf servingapp-controller ;;
	*nats_service_names*) echo '["servingapp-nats-0","servingapp-nats-1","servingapp-nats-2"]' ;;
	*nats_admin_url*) printf tls://internal-nlb:4222 ;;
	*nats_admin_creds_secret_arn*) printf arn:aws:secretsmanager:eu-west-1:1:secret:x-platform/nats/admin-creds ;;
	*nats_ca_certificate*) echo "-----BEGIN CERTIFICATE-----" ;;
	*alb_dns_name*) printf servingapp-apps.elb.amazonaws.com ;;
	esac ;;
esac`,
	"aws": `
fail_if "aws $1 $2"
case "$1 $2" in
"sts get-caller-identity") echo 123456789012 ;;
"ecr describe-repositories") echo "123456789012.dkr.ecr.eu-west-1.amazonaws.com/$4" ;;
"ecr describe-images") [ -n "${STUB_IMAGES_EXIST:-}" ] || { echo "ImageNotFoundException" >&2; exit 254; } ;;
"ecr get-login-password") echo password ;;
"ecs describe-services")
	case "$*" in
	*events*) printf '2025-01-01\tservice servingapp-controller: task failed container health checks\n' ;;
	*servingapp-controller*) [ "${STUB_ROLLOUT:-}" = FAILED ] && printf 'FAILED\t0\t2\n' || printf 'COMPLETED\t2\t2\n' ;;
	*) printf 'COMPLETED\t1\t1\n' ;;
	esac ;;
"ecs list-tasks") printf 'arn:aws:ecs:task/1\tarn:aws:ecs:task/2\n' ;;
"ecs describe-tasks") printf 'HEALTHY\tHEALTHY\n' ;;
"secretsmanager get-secret-value") echo '{"version": 1}' ;;
esac`,
	"docker": `
fail_if "docker $1"
[ "$1" = login ] && cat >/dev/null
exit 0`,
	"go": `
fail_if "go $1 $2"
if [ "$2" = ./terraform/natsauth ]; then
	[ -f "$4" ] && echo "unchanged $4" || { echo '{"version": 1}' > "$4"; echo "created $4"; }
fi
if [ "$2" = ./cmd/servingctl ]; then
	# Like servingctl, open -f relative to the working directory.
	while [ $# -gt 0 ]; do
		if [ "$1" = -f ] && [ ! -e "$2" ]; then echo "servingctl: open $2: no such file or directory" >&2; exit 1; fi
		shift
	done
fi
exit 0`,
	"git": `echo v1.2.3`,
}

const stubPrelude = `#!/usr/bin/env bash
set -u
echo "$(basename "$0") $*" >> "$STUB_LOG"
fail_if() { if [ -n "${STUB_FAIL:-}" ] && [ "$1" = "$STUB_FAIL" ]; then echo "stub: $1 failed" >&2; exit 1; fi; }
`

type deployRun struct {
	root, log      string
	calls          []string
	stderr, stdout string
	err            error
}

// runDeploy runs a copy of deploy.sh in a scratch repository with the stubs
// first on PATH, from the test's working directory. files are created
// relative to the scratch root first.
func runDeploy(t *testing.T, env []string, files map[string]string, args ...string) *deployRun {
	t.Helper()
	return runDeployFrom(t, "", env, files, args...)
}

// runDeployFrom is runDeploy from dir, a directory relative to the scratch
// root ("" for the test's working directory), created if missing.
func runDeployFrom(t *testing.T, dir string, env []string, files map[string]string, args ...string) *deployRun {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	root := t.TempDir()
	bin := filepath.Join(root, ".stubs")
	for _, d := range []string{bin, filepath.Join(root, "terraform"), filepath.Join(root, "manifests", "examples")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile("../deploy.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "deploy.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(stubPrelude+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if files == nil {
		files = map[string]string{"terraform/terraform.tfvars": "aws_region = \"eu-west-1\"\napp_domain = \"apps.example.com\"\n"}
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := &deployRun{root: root, log: filepath.Join(root, ".stubs.log")}
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "deploy.sh")}, args...)...)
	if dir != "" {
		cmd.Dir = filepath.Join(root, dir)
		if err := os.MkdirAll(cmd.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STUB_LOG="+r.log, "WAIT_TIMEOUT=5", "IMAGE_TAG=")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r.err = cmd.Run()
	r.stdout, r.stderr = stdout.String(), stderr.String()
	if data, err := os.ReadFile(r.log); err == nil {
		r.calls = strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	return r
}

// index returns the position of the first call starting with prefix, or -1.
func (r *deployRun) index(prefix string) int {
	for i, c := range r.calls {
		if strings.HasPrefix(c, prefix) {
			return i
		}
	}
	return -1
}

func (r *deployRun) count(prefix string) int {
	n := 0
	for _, c := range r.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (r *deployRun) dump(t *testing.T) {
	t.Helper()
	t.Logf("calls:\n%s\nstdout:\n%s\nstderr:\n%s", strings.Join(r.calls, "\n"), r.stdout, r.stderr)
}

func TestDeployRunsTheStepsInOrder(t *testing.T) {
	r := runDeploy(t, nil, nil, "--yes")
	if r.err != nil {
		r.dump(t)
		t.Fatalf("deploy.sh failed: %v", r.err)
	}
	order := []string{
		"terraform version",
		"docker info",
		"aws sts get-caller-identity",
		"terraform -chdir=" + filepath.Join(r.root, "terraform") + " init",
		"go run ./terraform/natsauth",
		"terraform -chdir=" + filepath.Join(r.root, "terraform") + " apply -input=false -auto-approve -var-file=",
		"docker build --platform linux/amd64 -f " + filepath.Join(r.root, "Dockerfile.controller") + " --build-arg VERSION=v1.2.3",
		"docker push 123456789012.dkr.ecr.eu-west-1.amazonaws.com/servingapp-controller:v1.2.3",
		"docker build --platform linux/amd64 -f " + filepath.Join(r.root, "Dockerfile.webapp") + " --build-arg VERSION=v1.2.3",
		"docker push 123456789012.dkr.ecr.eu-west-1.amazonaws.com/servingapp-webapp:v1.2.3",
		"aws ecs describe-services --cluster servingapp --services servingapp-nats-0",
		"aws ecs describe-services --cluster servingapp --services servingapp-controller",
		"aws ecs describe-tasks",
	}
	last := -1
	for _, want := range order {
		i := r.index(want)
		if i <= last {
			r.dump(t)
			t.Fatalf("%q is missing or out of order (at %d, previous step at %d)", want, i, last)
		}
		last = i
	}
	if !strings.Contains(r.calls[r.index("terraform -chdir="+filepath.Join(r.root, "terraform")+" apply")], "-target=aws_ecr_repository.this") {
		t.Error("the first apply must create only the ECR repositories")
	}
	full := 0
	for _, c := range r.calls {
		if strings.Contains(c, " apply ") && !strings.Contains(c, "-target") && strings.Contains(c, "-var image_tag=v1.2.3") {
			full++
		}
	}
	if full != 1 {
		t.Errorf("%d full applies with image_tag=v1.2.3, want 1", full)
	}
	if r.index("go run ./cmd/servingctl") >= 0 {
		t.Error("servingctl ran without --apply-manifests")
	}
}

func TestDeployRerunDoesNotRebuildImagesECRAlreadyHas(t *testing.T) {
	r := runDeploy(t, []string{"STUB_IMAGES_EXIST=1"}, nil, "--yes")
	if r.err != nil {
		r.dump(t)
		t.Fatal(r.err)
	}
	if n := r.count("docker build") + r.count("docker push") + r.count("docker login"); n != 0 {
		t.Errorf("%d docker build/push/login calls for a tag ECR already has", n)
	}
	if !strings.Contains(r.stdout, "already in ECR") {
		t.Errorf("stdout does not say the images were kept:\n%s", r.stdout)
	}
}

func TestDeployStopsAtTheFirstFailureAndNamesTheStep(t *testing.T) {
	for _, tc := range []struct {
		fail, step string
		notAfter   string
	}{
		{"terraform init", "terraform init", "go run"},
		{"go run ./terraform/natsauth", "NATS auth bundle", "docker build"},
		{"docker build", "Images v1.2.3", "docker push"},
		{"terraform apply", "ECR repositories", "docker build"},
		{"aws ecr describe-repositories", "Images v1.2.3", "docker build"},
	} {
		t.Run(tc.fail, func(t *testing.T) {
			r := runDeploy(t, []string{"STUB_FAIL=" + tc.fail}, nil, "--yes")
			if r.err == nil {
				r.dump(t)
				t.Fatal("deploy.sh succeeded")
			}
			if want := `FAILED during "` + tc.step; strings.Count(r.stderr, want) != 1 {
				r.dump(t)
				t.Fatalf("stderr does not contain %q exactly once", want)
			}
			if !strings.Contains(r.stderr, "rerun ./deploy.sh") {
				t.Error("the failure message does not say the script can be rerun")
			}
			if r.index(tc.notAfter) >= 0 {
				r.dump(t)
				t.Fatalf("%q ran after the failure", tc.notAfter)
			}
		})
	}
}

func TestDeployChecksPrerequisitesBeforeChangingAnything(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   []string
		files map[string]string
		args  []string
		want  string
	}{
		{"no tfvars", nil, map[string]string{}, nil, "terraform.tfvars does not exist"},
		{"no region", nil, map[string]string{"terraform/terraform.tfvars": "name = \"x\"\n"}, nil, "aws_region is not set"},
		{"no AWS credentials", []string{"STUB_FAIL=aws sts get-caller-identity"}, nil, nil, "no usable AWS credentials"},
		{"no Docker daemon", []string{"STUB_FAIL=docker info"}, nil, nil, "Docker daemon is not reachable"},
		{"no such manifests", nil, nil, []string{"--yes", "--apply-manifests", "no/such/dir"}, "--apply-manifests no/such/dir does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runDeploy(t, tc.env, tc.files, tc.args...)
			if r.err == nil || !strings.Contains(r.stderr, tc.want) {
				r.dump(t)
				t.Fatalf("want failure %q", tc.want)
			}
			for _, c := range r.calls {
				if strings.Contains(c, " init") || strings.Contains(c, " apply") || strings.HasPrefix(c, "go ") {
					t.Errorf("%q ran before the prerequisites were met", c)
				}
			}
		})
	}
}

func TestDeployReportsAFailedRolloutWithItsEvents(t *testing.T) {
	r := runDeploy(t, []string{"STUB_ROLLOUT=FAILED"}, nil, "--yes")
	if r.err == nil {
		r.dump(t)
		t.Fatal("deploy.sh succeeded although the controller rollout failed")
	}
	for _, want := range []string{"deployment of servingapp-controller failed", "task failed container health checks"} {
		if !strings.Contains(r.stderr, want) {
			r.dump(t)
			t.Fatalf("stderr does not contain %q", want)
		}
	}
}

func TestDeployRestoresTheAuthBundleBeforeCreatingOne(t *testing.T) {
	r := runDeploy(t, []string{"STUB_BACKUP=1"}, nil, "--yes")
	if r.err != nil {
		r.dump(t)
		t.Fatal(r.err)
	}
	restore, natsauth := r.index("aws secretsmanager get-secret-value --secret-id arn:aws:secretsmanager:eu-west-1:1:secret:x-platform/nats/auth-bundle"), r.index("go run ./terraform/natsauth")
	if restore < 0 || natsauth < restore {
		r.dump(t)
		t.Fatal("the bundle was not restored from its backup before natsauth ran")
	}
	if !strings.Contains(r.stdout, "unchanged") {
		t.Errorf("natsauth created a new bundle instead of keeping the restored one:\n%s", r.stdout)
	}
}

func TestDeployAppliesManifestsAsAdminOverTLS(t *testing.T) {
	r := runDeploy(t, nil, nil, "--yes", "--apply-manifests")
	if r.err != nil {
		r.dump(t)
		t.Fatal(r.err)
	}
	i := r.index("go run ./cmd/servingctl")
	if i < 0 {
		r.dump(t)
		t.Fatal("servingctl did not run")
	}
	call := r.calls[i]
	// servingctl runs from the repository root; the path is absolute so it
	// means the same from wherever deploy.sh was run.
	for _, want := range []string{"--server tls://internal-nlb:4222", "--creds ", "admin.creds", "--ca ", "nats-ca.pem", "apply -f " + filepath.Join(r.root, "manifests", "examples")} {
		if !strings.Contains(call, want) {
			t.Errorf("servingctl call %q lacks %q", call, want)
		}
	}
	if i < r.index("aws ecs describe-tasks") {
		t.Error("manifests were applied before the controller was healthy")
	}
}

// TestDeployAppliesManifestsFromWhereverItIsRun runs deploy.sh from inside
// and outside the repository: servingctl runs from the repository root, so a
// path relative to the caller's directory must reach it as an absolute path
// (the servingctl stub fails on a path it cannot open, as servingctl does).
func TestDeployAppliesManifestsFromWhereverItIsRun(t *testing.T) {
	tfvars := "aws_region = \"eu-west-1\"\n"
	for _, tc := range []struct {
		name, dir string
		arg       []string // after --apply-manifests
		want      string   // relative to the scratch root
	}{
		{"a directory relative to the caller, outside the repository", "elsewhere", []string{"mine"}, "elsewhere/mine"},
		{"a file relative to the caller, outside the repository", "elsewhere", []string{"./mine/app.yaml"}, "elsewhere/mine/app.yaml"},
		{"a path relative to the caller, in a subdirectory", "terraform", []string{"../manifests/examples"}, "manifests/examples"},
		{"the default, from outside the repository", "elsewhere", nil, "manifests/examples"},
		{"a path under the repository root, from outside it", "elsewhere", []string{"manifests/examples"}, "manifests/examples"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{
				"terraform/terraform.tfvars":   tfvars,
				"elsewhere/mine/app.yaml":      "kind: ServingApp\n",
				"manifests/examples/demo.yaml": "kind: ServingApp\n",
			}
			r := runDeployFrom(t, tc.dir, nil, files, append([]string{"--yes", "--apply-manifests"}, tc.arg...)...)
			if r.err != nil {
				r.dump(t)
				t.Fatalf("deploy.sh failed: %v", r.err)
			}
			i := r.index("go run ./cmd/servingctl")
			if i < 0 {
				r.dump(t)
				t.Fatal("servingctl did not run")
			}
			if want := " apply -f " + filepath.Join(r.root, tc.want); !strings.HasSuffix(r.calls[i], want) {
				t.Errorf("servingctl call %q does not end in %q", r.calls[i], want)
			}
		})
	}
}

// terraformOutputCall matches "tf output -raw NAME" (deploy.sh's wrapper) and
// "terraform output -json NAME"; group 1 is the output's name.
var terraformOutputCall = regexp.MustCompile(`\b(?:tf|terraform(?:\s+-chdir=\S+)?)\s+output(?:\s+-[a-z]+)*\s+([A-Za-z_][A-Za-z0-9_-]*)`)

// TestEveryOutputTheScriptsReadExists checks that the outputs deploy.sh and
// the guide's commands read are declared in outputs.tf: a renamed output
// would otherwise surface as an error (or, with -raw in $(...), an empty
// value) at the end of a real deployment. It also checks that the terraform
// stub answers each one deploy.sh reads, so the deploy tests exercise them.
func TestEveryOutputTheScriptsReadExists(t *testing.T) {
	m := loadModule(t)
	for _, tc := range []struct {
		file        string
		stubAnswers bool
	}{
		{"../deploy.sh", true},
		{"../docs/deploy-aws.md", false},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			src, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			found := terraformOutputCall.FindAllSubmatchIndex(src, -1)
			if len(found) == 0 {
				t.Fatalf("%s reads no terraform output: is terraformOutputCall out of date?", tc.file)
			}
			for _, loc := range found {
				name := string(src[loc[2]:loc[3]])
				line := 1 + bytes.Count(src[:loc[0]], []byte("\n"))
				if m.outputs[name] == nil {
					t.Errorf("%s:%d reads output %q, which outputs.tf does not declare", tc.file, line, name)
				}
				if tc.stubAnswers && !strings.Contains(stubs["terraform"], "*"+name+"*)") {
					t.Errorf("%s:%d reads output %q, which the terraform stub does not answer", tc.file, line, name)
				}
			}
		})
	}
}
