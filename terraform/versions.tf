# Terraform and provider versions, and the AWS provider with the tags every
# resource carries. State holds secrets (the Databricks service principal's
# secret, NATS credentials and TLS keys): keep it in an encrypted remote
# backend, see docs/deploy-aws.md ("Remote state").

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, {
      "servingapp.io/installation" = var.name
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Marks everything the controller creates; resources tagged with another
  # id are never touched by it (and the IAM conditions below enforce that).
  controller_id = var.controller_id != "" ? var.controller_id : "${var.name}-${var.aws_region}"

  # The tag key the controller's IAM conditions test.
  managed_by_tag = "servingapp.io/managed-by"

  # Secrets the controller and the web apps may read live under
  # secret_prefix; the controller creates its own (session keys, OAuth client
  # secrets) under controller_secret_prefix; secrets only the platform
  # (controller task start, NATS) reads live under platform_secret_prefix,
  # out of the controller's and the apps' reach.
  secret_prefix            = "${var.name}/"
  controller_secret_prefix = "${var.name}/apps/"
  platform_secret_prefix   = "${var.name}-platform/"
}
