#!/usr/bin/env bash
# deploy.sh: from a filled terraform/terraform.tfvars to a running servingapp
# platform on AWS, in one command. See docs/deploy-aws.md.
#
#   ./deploy.sh [--tag TAG] [--apply-manifests [PATH]] [--yes]
#
# Steps, each safe to repeat (rerun after fixing whatever stopped it):
#   1. check prerequisites (tools, Docker daemon, AWS credentials, tfvars)
#   2. terraform init
#   3. NATS auth bundle: keep terraform/nats-auth.json, restore it from its
#      Secrets Manager backup, or create it (go run ./terraform/natsauth)
#   4. create the two ECR repositories (terraform apply -target)
#   5. build and push both images under TAG, unless ECR already has that tag
#   6. terraform apply
#   7. wait until the NATS nodes and the controller are deployed and healthy
#   8. with --apply-manifests: servingctl apply -f PATH, a file or directory
#      (default manifests/examples); a relative PATH is taken from the current
#      directory, else from the repository root
#
# Environment: TFVARS (default terraform/terraform.tfvars), IMAGE_TAG (same as
# --tag), WAIT_TIMEOUT seconds (default 900), DOCKER_PLATFORM (linux/amd64).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TF_DIR="$ROOT/terraform"
TFVARS=${TFVARS:-$TF_DIR/terraform.tfvars}
TAG=${IMAGE_TAG:-}
MANIFESTS=""
AUTO_APPROVE=()
WAIT_TIMEOUT=${WAIT_TIMEOUT:-900}
DOCKER_PLATFORM=${DOCKER_PLATFORM:-linux/amd64}
MIN_TERRAFORM=1.5.0

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

current_step="starting"
step() {
	current_step="$*"
	printf '\n==> %s\n' "$*"
}

die() {
	printf '\ndeploy.sh: %s\n' "$*" >&2
	exit 1
}

on_error() {
	local rc=$1 line=$2 cmd=$3
	# set -E hands this trap to command substitutions too: only the main shell
	# reports, once.
	[ "$BASHPID" = "$$" ] || exit "$rc"
	printf '\ndeploy.sh: FAILED during "%s"\n  command (line %s, exit %s): %s\n  Fix the cause above and rerun ./deploy.sh; every step is safe to repeat.\n' \
		"$current_step" "$line" "$rc" "$cmd" >&2
	exit "$rc"
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

while [ $# -gt 0 ]; do
	case $1 in
	--tag)
		[ $# -ge 2 ] || die "--tag needs a value"
		TAG=$2
		shift 2
		;;
	--apply-manifests)
		if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then
			MANIFESTS=$2
			shift 2
		else
			MANIFESTS=manifests/examples
			shift
		fi
		;;
	--yes | -y)
		AUTO_APPROVE=(-auto-approve)
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
done

tf() { terraform -chdir="$TF_DIR" "$@"; }

# tfvar NAME DEFAULT: a simple string assignment (NAME = "value") from the
# tfvars file, or DEFAULT. Only used for names the AWS CLI needs before any
# Terraform output exists.
tfvar() {
	local v
	v=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$TFVARS" | tail -n 1)
	printf '%s' "${v:-$2}"
}

# abspath PATH: PATH (which exists) as an absolute path.
abspath() {
	local dir=$1 base=""
	if [ ! -d "$1" ]; then
		dir=$(dirname -- "$1")
		base=/$(basename -- "$1")
	fi
	dir=$(cd -- "$dir" && pwd) || return
	printf '%s%s' "$dir" "$base"
}

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

# --- 1. prerequisites ------------------------------------------------------------
step "Checking prerequisites"
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"; }
need terraform "install Terraform >= $MIN_TERRAFORM (https://developer.hashicorp.com/terraform/install)"
need aws "install the AWS CLI v2"
need docker "install Docker (BuildKit is used for the image builds)"
need go "install Go 1.26: it builds the NATS auth bundle and runs servingctl"
need git "install git"
tf_version=$(terraform version | sed -n '1s/^Terraform v//p')
version_ge "$tf_version" "$MIN_TERRAFORM" || die "Terraform $tf_version is too old: need >= $MIN_TERRAFORM"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (is it running, and may you use it?)"
[ -f "$TFVARS" ] || die "$TFVARS does not exist: copy terraform/terraform.tfvars.example to it and fill it in"
TFVARS=$(abspath "$TFVARS")
# servingctl runs from the repository root (go run ./cmd/servingctl), so it
# gets the manifests as an absolute path; checked now, before anything changes.
if [ -n "$MANIFESTS" ]; then
	if [ -e "$MANIFESTS" ]; then
		MANIFESTS=$(abspath "$MANIFESTS")
	elif [ "${MANIFESTS#/}" = "$MANIFESTS" ] && [ -e "$ROOT/$MANIFESTS" ]; then
		MANIFESTS=$(abspath "$ROOT/$MANIFESTS")
	else
		die "--apply-manifests $MANIFESTS does not exist (a relative path is taken from $PWD, else from $ROOT)"
	fi
fi
account=$(aws sts get-caller-identity --query Account --output text 2>/dev/null) ||
	die "no usable AWS credentials: configure them (aws configure, AWS_PROFILE or SSO) and rerun"
region=$(tfvar aws_region "")
[ -n "$region" ] || die "aws_region is not set in $TFVARS"
name=$(tfvar name servingapp)
bundle="$TF_DIR/$(tfvar nats_auth_file nats-auth.json)"
export AWS_REGION="$region"

if [ -z "$TAG" ]; then
	TAG=$(git -C "$ROOT" describe --tags --always --dirty)
	case $TAG in
	*-dirty)
		# ECR tags are immutable: a dirty tree gets a tag of its own.
		TAG="$TAG-$(date -u +%Y%m%d%H%M%S)"
		printf 'warning: the working tree has uncommitted changes; images are tagged %s\n' "$TAG" >&2
		;;
	esac
fi
TF_VARS=(-var-file="$TFVARS" -var "image_tag=$TAG")
printf 'account %s, region %s, installation %s, image tag %s\n' "$account" "$region" "$name" "$TAG"

# --- 2. init ------------------------------------------------------------------------
step "terraform init"
tf init -input=false

# --- 3. NATS auth bundle --------------------------------------------------------------
step "NATS auth bundle ($bundle)"
if [ ! -f "$bundle" ]; then
	backup=$(tf output -raw nats_auth_bundle_secret_arn 2>/dev/null || true)
	if [ -n "$backup" ] && [ "${backup#arn:}" != "$backup" ]; then
		printf 'restoring it from %s\n' "$backup"
		(umask 077 && aws secretsmanager get-secret-value --secret-id "$backup" \
			--query SecretString --output text >"$bundle.tmp" && mv "$bundle.tmp" "$bundle")
	fi
fi
# Creates the bundle when missing; otherwise checks it and re-issues only what
# changed (a rerun prints "unchanged").
(cd "$ROOT" && go run ./terraform/natsauth -bundle "$bundle")

# --- 4. repositories --------------------------------------------------------------------
step "ECR repositories"
tf apply -input=false -auto-approve "${TF_VARS[@]}" \
	-target=aws_ecr_repository.this -target=aws_ecr_lifecycle_policy.this

# --- 5. images ---------------------------------------------------------------------------
step "Images $TAG"
login_done=""
for component in controller webapp; do
	repo="$name-$component"
	uri=$(aws ecr describe-repositories --repository-names "$repo" --query 'repositories[0].repositoryUri' --output text)
	if aws ecr describe-images --repository-name "$repo" --image-ids "imageTag=$TAG" >/dev/null 2>&1; then
		printf '%s:%s is already in ECR; not rebuilding (tags are immutable)\n' "$repo" "$TAG"
		continue
	fi
	if [ -z "$login_done" ]; then
		aws ecr get-login-password | docker login --username AWS --password-stdin "${uri%%/*}"
		login_done=1
	fi
	docker build --platform "$DOCKER_PLATFORM" -f "$ROOT/Dockerfile.$component" \
		--build-arg "VERSION=$TAG" -t "$uri:$TAG" "$ROOT"
	docker push "$uri:$TAG"
done

# --- 6. everything else -------------------------------------------------------------------
step "terraform apply"
tf apply -input=false "${AUTO_APPROVE[@]}" "${TF_VARS[@]}"

cluster=$(tf output -raw cluster_name)
controller=$(tf output -raw controller_service_name)
nats_json=$(tf output -json nats_service_names)
read -r -a nats_services <<<"$(printf '%s' "$nats_json" | tr '[]",' '    ')"

# --- 7. wait ------------------------------------------------------------------------------
# wait_deployed SERVICE...: until each service's primary deployment completed
# with running == desired; a failed rollout stops at once with its events.
wait_deployed() {
	local deadline=$((SECONDS + WAIT_TIMEOUT)) svc out state running desired pending
	while :; do
		pending=""
		for svc in "$@"; do
			# shellcheck disable=SC2016 # backticks are JMESPath literals
			out=$(aws ecs describe-services --cluster "$cluster" --services "$svc" \
				--query 'services[0].[deployments[?status==`PRIMARY`]|[0].rolloutState, runningCount, desiredCount]' \
				--output text)
			read -r state running desired <<<"$out"
			case $state in
			FAILED)
				aws ecs describe-services --cluster "$cluster" --services "$svc" \
					--query 'services[0].events[:8].[createdAt, message]' --output text >&2
				die "the deployment of $svc failed (events above); logs: aws logs tail /$name/ --since 30m"
				;;
			COMPLETED) [ "$running" = "$desired" ] || pending="$pending $svc($running/$desired)" ;;
			*) pending="$pending $svc($state $running/$desired)" ;;
			esac
		done
		[ -z "$pending" ] && return 0
		[ $SECONDS -lt "$deadline" ] || die "timed out after ${WAIT_TIMEOUT}s waiting for:$pending"
		printf 'waiting for:%s\n' "$pending"
		sleep 15
	done
}

step "Waiting for the NATS nodes"
wait_deployed "${nats_services[@]}"

step "Waiting for the controller"
wait_deployed "$controller"
deadline=$((SECONDS + WAIT_TIMEOUT))
while :; do
	tasks=$(aws ecs list-tasks --cluster "$cluster" --service-name "$controller" --desired-status RUNNING --query 'taskArns' --output text)
	health=""
	if [ -n "$tasks" ] && [ "$tasks" != "None" ]; then
		# shellcheck disable=SC2086,SC2016 # one argument per task ARN; JMESPath literals
		health=$(aws ecs describe-tasks --cluster "$cluster" --tasks $tasks \
			--query 'tasks[].containers[?name==`controller`].healthStatus[]' --output text)
	fi
	if [ -n "$health" ] && [ -z "$(printf '%s\n' "$health" | tr -s '\t ' '\n' | grep -v '^HEALTHY$' || true)" ]; then
		printf 'controller tasks healthy: %s\n' "$health"
		break
	fi
	[ $SECONDS -lt "$deadline" ] ||
		die "the controller is not healthy after ${WAIT_TIMEOUT}s (health: ${health:-no tasks}); logs: aws logs tail /$name/controller --since 30m"
	printf 'controller health: %s\n' "${health:-no running tasks yet}"
	sleep 10
done

# --- 8. manifests ---------------------------------------------------------------------------
# Read into variables, not inline $(...): a failed output then stops here
# instead of passing an empty value on.
admin_url=$(tf output -raw nats_admin_url)
admin_creds_arn=$(tf output -raw nats_admin_creds_secret_arn)
alb_dns_name=$(tf output -raw alb_dns_name)
if [ -n "$MANIFESTS" ]; then
	step "servingctl apply -f $MANIFESTS"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	(umask 077 && aws secretsmanager get-secret-value --secret-id "$admin_creds_arn" \
		--query SecretString --output text >"$work/admin.creds")
	tf output -raw nats_ca_certificate >"$work/nats-ca.pem"
	(cd "$ROOT" && go run ./cmd/servingctl \
		--server "$admin_url" --creds "$work/admin.creds" --ca "$work/nats-ca.pem" apply -f "$MANIFESTS") ||
		die "servingctl apply failed: is this machine inside admin_allowlist (VPN)? see docs/deploy-aws.md, 'Admin access'"
fi

step "Done"
cat <<EOF
Platform $name is running in $region (images $TAG).
  apps:         https://<host> under $(tfvar app_domain "<app_domain>"), ALB $alb_dns_name
  NATS (admin): $admin_url   (creds: $admin_creds_arn)
  logs:         aws logs tail /$name/controller --follow
Next: docs/deploy-aws.md, "Apply your first app".
EOF
