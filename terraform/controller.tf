# The controller service. Its configuration (controller/config, documented in
# manifests/controller.example.yaml) is rendered from the resources above with
# yamlencode and delivered like this, because the binary reads a file
# (--config FILE) and the image is distroless (no shell):
#
#   SSM parameter /<name>/controller/config.yaml ─┐
#   secret <name>-platform/nats/controller-creds ─┼─ "config" init container
#   SSM parameter /<name>/nats/ca.pem ────────────┘  (busybox) writes them to a
#        shared task volume at /etc/servingapp, then exits 0
#   "controller" container (starts after SUCCESS): --config /etc/servingapp/controller.yaml,
#        SSL_CERT_DIR=/etc/servingapp/ca so Go trusts the NATS CA besides the system roots
#
# A change of the config or of the NATS creds registers a new task definition
# revision (their hashes are in the environment), which rolls the service.

locals {
  controller_image = "${aws_ecr_repository.this["controller"].repository_url}:${var.image_tag}"
  webapp_image     = "${aws_ecr_repository.this["webapp"].repository_url}:${var.image_tag}"

  # Field names are controller/config's JSON tags; terraform_test.go checks them.
  controller_config = {
    controllerId   = local.controller_id
    platform       = "aws"
    defaultImage   = local.webapp_image
    appDomain      = var.app_domain
    trustedProxies = local.alb_subnet_cidrs
    nats = {
      url            = local.nats_client_url
      creds          = "/etc/servingapp/controller.creds"
      appUrl         = local.nats_client_url
      appCredsSecret = aws_secretsmanager_secret.nats_webapp_creds.arn
    }
    workers  = var.controller_workers
    resync   = "10m"
    listen   = ":9090"
    logLevel = var.controller_log_level
    leaderElection = {
      leaseTTL      = "15s"
      renewEvery    = "5s"
      renewDeadline = "10s"
    }
    streams = {
      replicas    = length(local.nats_nodes)
      auditMaxAge = "${var.audit_retention_days}d"
      # The audit stream gets 70% (717 MiB of every GiB) of each node's
      # JetStream file store, so it fills (discard-new, with the
      # controller's metric and log) before JetStream itself runs out and
      # refuses sessions, specs and status too. The rest is for those and
      # SERVINGAPP_EVENTS.
      auditMaxBytes = var.nats_storage_gib * 717 * 1024 * 1024
      eventsMaxAge  = "30d"
    }
    aws = {
      region                        = var.aws_region
      cluster                       = aws_ecs_cluster.this.name
      listenerArn                   = aws_lb_listener.https.arn
      vpcId                         = local.vpc_id
      subnets                       = local.private_subnet_ids
      securityGroups                = [aws_security_group.apps.id]
      assignPublicIp                = false
      executionRoleArn              = aws_iam_role.app_execution.arn
      taskRoleArn                   = aws_iam_role.webapp_task.arn
      logGroup                      = aws_cloudwatch_log_group.this["apps"].name
      rulePriorities                = local.rule_priorities
      extraTags                     = var.tags
      secretPrefix                  = local.controller_secret_prefix
      secretRecoveryWindowDays      = 7
      healthCheckGracePeriodSeconds = 60
      rateLimits = {
        describePerSecond = 20
        mutatePerSecond   = 5
        burst             = 10
      }
      maxAttempts = 8
    }
    databricks = {
      accountHost            = var.databricks_account_host
      accountId              = var.databricks_account_id
      credentialsSecret      = aws_secretsmanager_secret.databricks_account.arn
      accessTokenTTLMinutes  = 60
      refreshTokenTTLMinutes = 10080
    }
  }

  controller_config_yaml = yamlencode(local.controller_config)

  controller_init_script = <<-EOT
    set -eu
    umask 077
    mkdir -p /etc/servingapp/ca
    printf '%s' "$CONTROLLER_CONFIG" > /etc/servingapp/controller.yaml
    printf '%s' "$NATS_CREDS" > /etc/servingapp/controller.creds
    printf '%s' "$NATS_CA" > /etc/servingapp/ca/nats-ca.pem
    chown -R 65532:65532 /etc/servingapp
  EOT
}

resource "aws_ssm_parameter" "controller_config" {
  name        = "/${var.name}/controller/config.yaml"
  description = "servingapp-controller configuration, rendered by terraform/controller.tf"
  type        = "String"
  tier        = "Intelligent-Tiering"
  value       = local.controller_config_yaml
}

resource "aws_ecs_task_definition" "controller" {
  family                   = "${var.name}-controller"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.controller_cpu
  memory                   = var.controller_memory
  execution_role_arn       = aws_iam_role.platform_execution.arn
  task_role_arn            = aws_iam_role.controller_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "config"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name       = "config"
      image      = var.init_image
      essential  = false
      user       = "0"
      entryPoint = ["/bin/sh", "-c"]
      command    = [local.controller_init_script]
      secrets = [
        { name = "CONTROLLER_CONFIG", valueFrom = aws_ssm_parameter.controller_config.arn },
        { name = "NATS_CREDS", valueFrom = aws_secretsmanager_secret.nats_controller_creds.arn },
        { name = "NATS_CA", valueFrom = aws_ssm_parameter.nats_ca.arn },
      ]
      mountPoints = [{ sourceVolume = "config", containerPath = "/etc/servingapp", readOnly = false }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this["controller"].name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = "init"
        }
      }
    },
    {
      name                   = "controller"
      image                  = local.controller_image
      essential              = true
      command                = ["--config", "/etc/servingapp/controller.yaml"]
      readonlyRootFilesystem = true
      dependsOn              = [{ containerName = "config", condition = "SUCCESS" }]
      portMappings           = [{ containerPort = 9090, protocol = "tcp" }]
      environment = [
        { name = "SSL_CERT_DIR", value = "/etc/servingapp/ca" },
        { name = "CONFIG_SHA256", value = sha256(local.controller_config_yaml) },
        { name = "NATS_CREDS_VERSION", value = aws_secretsmanager_secret_version.nats_controller_creds.version_id },
      ]
      mountPoints = [
        { sourceVolume = "config", containerPath = "/etc/servingapp", readOnly = true },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]
      healthCheck = {
        command     = ["CMD", "/servingapp-controller", "healthcheck"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      stopTimeout = 30
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this["controller"].name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = "controller"
        }
      }
    },
  ])

  lifecycle {
    precondition {
      condition     = contains(local.fargate_memory[var.controller_cpu], var.controller_memory)
      error_message = "controller_memory ${var.controller_memory} is not a Fargate size for controller_cpu ${var.controller_cpu}: use one of ${join(", ", local.fargate_memory[var.controller_cpu])}."
    }
  }
}

resource "aws_ecs_service" "controller" {
  name             = "${var.name}-controller"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.controller.arn
  desired_count    = var.controller_replicas
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  # Leader election makes extra replicas harmless during a rollout.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  # deploy.sh waits for the rollout and reports its failures.
  wait_for_steady_state = false

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.controller.id]
    assign_public_ip = false
  }

  depends_on = [
    aws_ecs_service.nats,
    aws_iam_role_policy.controller_task,
    aws_iam_role_policy.platform_execution,
    aws_ecs_cluster_capacity_providers.this,
  ]
}

# --- Security group: nothing inbound (health checks run inside the task). ---

resource "aws_security_group" "controller" {
  name        = "${var.name}-controller"
  description = "servingapp controller tasks: no inbound; out to HTTPS (AWS APIs, Databricks account API) and NATS"
  vpc_id      = local.vpc_id

  tags = { Name = "${var.name}-controller" }
}

resource "aws_vpc_security_group_egress_rule" "controller_https" {
  security_group_id = aws_security_group.controller.id
  description       = "HTTPS: ECS, ELBv2, Secrets Manager, ECR, CloudWatch Logs, Databricks"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "controller_nats" {
  security_group_id            = aws_security_group.controller.id
  description                  = "NATS clients"
  ip_protocol                  = "tcp"
  from_port                    = 4222
  to_port                      = 4222
  referenced_security_group_id = aws_security_group.nats.id
}
