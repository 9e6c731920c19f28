# Inputs of the servingapp base infrastructure. terraform.tfvars.example shows
# a filled set; docs/deploy-aws.md explains each step.

# --- Installation ---------------------------------------------------------

variable "aws_region" {
  description = "AWS region to deploy into, e.g. eu-west-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region name such as eu-west-1."
  }
}

variable "name" {
  description = "Name of this installation: prefixes every resource name, the cluster, log groups and the Secrets Manager prefixes (<name>/ and <name>-platform/)."
  type        = string
  default     = "servingapp"

  validation {
    # Load balancer and target group names are limited to 32 characters and
    # get suffixes such as "-nats".
    condition     = can(regex("^[a-z][a-z0-9-]{0,18}[a-z0-9]$", var.name))
    error_message = "name must be 2-20 lowercase letters, digits or '-', starting with a letter and not ending with '-'."
  }
}

variable "controller_id" {
  description = "Controller id (tag servingapp.io/managed-by on everything the controller creates). Two installations in one account need two ids. Empty: <name>-<aws_region>."
  type        = string
  default     = ""

  validation {
    condition     = length(var.controller_id) <= 64 && !can(regex("[ /,]", var.controller_id))
    error_message = "controller_id must be at most 64 characters without spaces, '/' or ','."
  }
}

variable "tags" {
  description = "Tags added to every resource Terraform creates and to every resource the controller creates (extraTags)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : !startswith(k, "servingapp.io/") && !startswith(lower(k), "aws:")])
    error_message = "tags must not use the reserved prefixes servingapp.io/ and aws:."
  }
}

variable "allow_destroy" {
  description = "Let terraform destroy remove everything: disables ALB deletion protection, lets ECR repositories be deleted with their images, and deletes secrets without a recovery window. Set true, apply, then destroy."
  type        = bool
  default     = false
}

# --- Network --------------------------------------------------------------

variable "vpc_id" {
  description = "Existing VPC to use. Empty: create a VPC with public and private subnets and NAT gateways."
  type        = string
  default     = ""

  validation {
    condition     = var.vpc_id == "" || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must be empty or a VPC id such as vpc-0abc1234def567890."
  }
}

variable "public_subnet_ids" {
  description = "With vpc_id: subnets for the internet-facing ALB, in at least two availability zones. Their CIDRs become the web apps' trusted proxies."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "public_subnet_ids must be subnet ids such as subnet-0aaa1111bbbb2222c."
  }
}

variable "private_subnet_ids" {
  description = "With vpc_id: private subnets with a route to the internet (NAT) for the tasks, NATS, EFS and the internal NLB, in at least two availability zones."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids must be subnet ids such as subnet-0ddd3333eeee4444f."
  }
}

variable "vpc_cidr" {
  description = "Without vpc_id: CIDR of the new VPC (/16 to /18). Public subnets take /24-sized slices at its start, private subnets larger slices after them."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 18, false)
    error_message = "vpc_cidr must be an IPv4 CIDR with a prefix length from /16 to /18."
  }
}

variable "availability_zone_count" {
  description = "Without vpc_id: how many availability zones the new VPC spans (2 or 3). NATS nodes are spread over them."
  type        = number
  default     = 3

  validation {
    condition     = contains([2, 3], var.availability_zone_count)
    error_message = "availability_zone_count must be 2 or 3."
  }
}

variable "single_nat_gateway" {
  description = "Without vpc_id: one NAT gateway for all private subnets (cheaper; an AZ outage cuts egress) instead of one per AZ."
  type        = bool
  default     = false
}

# --- App hosts, TLS and the load balancer -----------------------------------

variable "app_domain" {
  description = "Domain of the app hosts, e.g. apps.example.com. Apps are served at <host> under it; apps without spec.route.host get <name>.<namespace>.<app_domain>."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.app_domain))
    error_message = "app_domain must be a lowercase DNS name such as apps.example.com."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone that holds app_domain. Given: Terraform creates <app_domain> and *.<app_domain> records for the ALB and, without certificate_arn, a DNS-validated certificate. Empty: you create the DNS records yourself."
  type        = string
  default     = ""

  validation {
    condition     = var.route53_zone_id == "" || can(regex("^Z[0-9A-Z]{4,31}$", var.route53_zone_id))
    error_message = "route53_zone_id must be empty or a hosted zone id such as Z0123456789ABCDEFGHIJ."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener covering app_domain and *.app_domain (and *.<namespace>.<app_domain> for apps that rely on the default host). Empty: Terraform requests one, which needs route53_zone_id."
  type        = string
  default     = ""

  validation {
    condition     = var.certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be empty or an ACM certificate ARN."
  }
}

variable "certificate_namespaces" {
  description = "Namespaces whose apps use the default host <name>.<namespace>.<app_domain>: the requested certificate also covers *.<namespace>.<app_domain> for each (a wildcard covers one label only). Up to 8."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.certificate_namespaces) <= 8 && alltrue([for n in var.certificate_namespaces : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n))])
    error_message = "certificate_namespaces must be at most 8 DNS labels (ACM allows 10 names per certificate by default)."
  }
}

variable "alb_internal" {
  description = "Make the app load balancer internal (reachable only from the VPC and connected networks) instead of internet-facing."
  type        = bool
  default     = false
}

variable "alb_ingress_cidrs" {
  description = "Networks allowed to reach the app load balancer at all. Each app's own allowlist is enforced by its listener rules on top of this."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "alb_ingress_cidrs must be a non-empty list of CIDRs."
  }
}

# --- Admin access to NATS ---------------------------------------------------

variable "admin_allowlist" {
  description = "Networks from which admins reach NATS (servingctl) through the internal NLB on port 4222, e.g. the VPN pool. The NLB is internal, so these must be routed into the VPC."
  type        = list(string)

  validation {
    condition     = length(var.admin_allowlist) > 0 && alltrue([for c in var.admin_allowlist : can(cidrhost(c, 0)) && !contains(["0.0.0.0/0", "::/0"], c)])
    error_message = "admin_allowlist must be a non-empty list of CIDRs narrower than 0.0.0.0/0 and ::/0."
  }
}

# --- Databricks -------------------------------------------------------------

variable "databricks_account_host" {
  description = "Databricks account console host for the account API (OAuth app integrations)."
  type        = string
  default     = "https://accounts.cloud.databricks.com"

  validation {
    condition     = can(regex("^https://[a-z0-9.-]+$", var.databricks_account_host))
    error_message = "databricks_account_host must be an https URL without a path, e.g. https://accounts.cloud.databricks.com."
  }
}

variable "databricks_account_id" {
  description = "Databricks account id (a UUID, shown in the account console)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.databricks_account_id))
    error_message = "databricks_account_id must be a lowercase UUID."
  }
}

variable "databricks_client_id" {
  description = "OAuth client id (application id) of the Databricks account service principal the controller uses to manage OAuth app integrations."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.databricks_client_id))
    error_message = "databricks_client_id must be the service principal's application id, a lowercase UUID."
  }
}

variable "databricks_client_secret" {
  description = "OAuth secret of that service principal. Stored in Secrets Manager as <name>/databricks/account-sp; it also lands in Terraform state."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.databricks_client_secret) >= 16 && !can(regex("\\s", var.databricks_client_secret))
    error_message = "databricks_client_secret looks wrong: it must be at least 16 characters without whitespace."
  }
}

# --- Images -------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the controller and web app images in the ECR repositories (deploy.sh passes the tag it pushed)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a Docker tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'."
  }
}

variable "ecr_keep_images" {
  description = "How many tagged images each ECR repository keeps; older ones expire. Keep enough for every web app revision still running."
  type        = number
  default     = 50

  validation {
    condition     = var.ecr_keep_images >= 5 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "ecr_keep_images must be a whole number from 5 to 1000."
  }
}

variable "init_image" {
  description = "Image of the controller task's init container, which writes the config, NATS credentials and CA from Secrets Manager and SSM to a shared volume (it needs a POSIX shell)."
  type        = string
  default     = "public.ecr.aws/docker/library/busybox:1.37"

  validation {
    condition     = length(var.init_image) > 0 && !can(regex("\\s", var.init_image))
    error_message = "init_image must be an image reference."
  }
}

# --- Controller ---------------------------------------------------------------

variable "controller_replicas" {
  description = "Controller tasks. One leads (KV lease), the others stand by and take over within ~20 s."
  type        = number
  default     = 2

  validation {
    condition     = contains([1, 2, 3], var.controller_replicas)
    error_message = "controller_replicas must be 1, 2 or 3."
  }
}

variable "controller_cpu" {
  description = "Fargate CPU units of a controller task (256 = 0.25 vCPU)."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.controller_cpu)
    error_message = "controller_cpu must be 256, 512, 1024, 2048 or 4096."
  }
}

variable "controller_memory" {
  description = "Memory (MiB) of a controller task; must be valid for controller_cpu on Fargate."
  type        = number
  default     = 512

  validation {
    condition     = var.controller_memory >= 512 && var.controller_memory <= 30720 && var.controller_memory % 512 == 0
    error_message = "controller_memory must be a multiple of 512 MiB from 512 to 30720."
  }
}

variable "controller_log_level" {
  description = "Controller log level."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.controller_log_level)
    error_message = "controller_log_level must be debug, info, warn or error."
  }
}

variable "controller_workers" {
  description = "Apps the controller reconciles at once."
  type        = number
  default     = 4

  validation {
    condition     = var.controller_workers >= 1 && var.controller_workers <= 64 && floor(var.controller_workers) == var.controller_workers
    error_message = "controller_workers must be a whole number from 1 to 64."
  }
}

variable "app_secret_arns" {
  description = "Secrets Manager ARNs outside <name>/ that ServingApps may reference in spec.secrets; the web apps' execution role may read them. Secrets under <name>/ need no entry."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.app_secret_arns : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", a))])
    error_message = "app_secret_arns must be Secrets Manager secret ARNs, without wildcards."
  }
}

# --- NATS -----------------------------------------------------------------------

variable "nats_image" {
  description = "NATS server image (an alpine variant: the entrypoint writes the config with /bin/sh). Keep it at the nats-server version in go.mod, which the tests run."
  type        = string
  default     = "public.ecr.aws/docker/library/nats:2.15.3-alpine"

  validation {
    condition     = length(var.nats_image) > 0 && !can(regex("\\s", var.nats_image))
    error_message = "nats_image must be an image reference."
  }
}

variable "nats_cpu" {
  description = "Fargate CPU units of each of the three NATS nodes."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.nats_cpu)
    error_message = "nats_cpu must be 256, 512, 1024, 2048 or 4096."
  }
}

variable "nats_memory" {
  description = "Memory (MiB) of each NATS node; must be valid for nats_cpu on Fargate. A quarter of it is JetStream's memory store limit."
  type        = number
  default     = 1024

  validation {
    condition     = var.nats_memory >= 512 && var.nats_memory <= 30720 && var.nats_memory % 512 == 0
    error_message = "nats_memory must be a multiple of 512 MiB from 512 to 30720."
  }
}

variable "nats_storage_gib" {
  description = "JetStream file storage limit of each NATS node in GiB (EFS grows as needed; this caps it). The audit stream keeps audit_retention_days of events."
  type        = number
  default     = 50

  validation {
    condition     = var.nats_storage_gib >= 1 && var.nats_storage_gib <= 10240 && floor(var.nats_storage_gib) == var.nats_storage_gib
    error_message = "nats_storage_gib must be a whole number from 1 to 10240."
  }
}

variable "nats_auth_file" {
  description = "Path (relative to this directory) of the NATS auth bundle made by `go run ./terraform/natsauth` (deploy.sh does it). It holds seeds: never commit it."
  type        = string
  default     = "nats-auth.json"

  validation {
    condition     = endswith(var.nats_auth_file, ".json")
    error_message = "nats_auth_file must name a .json file."
  }
}

variable "audit_retention_days" {
  description = "How long the audit stream keeps events (auditMaxAge)."
  type        = number
  default     = 400

  validation {
    condition     = var.audit_retention_days >= 1 && var.audit_retention_days <= 3650 && floor(var.audit_retention_days) == var.audit_retention_days
    error_message = "audit_retention_days must be a whole number from 1 to 3650."
  }
}

# --- Logs -----------------------------------------------------------------------

variable "log_retention_days" {
  description = "CloudWatch Logs retention of the controller, NATS and web app log groups."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}
