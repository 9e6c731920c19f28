# NATS JetStream: the API store, leases, sessions and the audit and event
# streams. Three nodes, each its own ECS service (desired count 1, never two
# at once, so one writer per data directory) with an EFS access point for its
# data, a stable DNS name through Cloud Map (nats-N.<name>.internal), TLS on
# client and route connections from a private CA, and operator-mode
# authentication with one user per role (controller, webapp, admin) from the
# auth bundle of terraform/natsauth. In-VPC clients use the node names; admins
# reach the cluster through an internal NLB open only to admin_allowlist.

locals {
  nats_nodes       = ["nats-0", "nats-1", "nats-2"]
  discovery_domain = "${var.name}.internal"
  nats_hosts       = { for node in local.nats_nodes : node => "${node}.${local.discovery_domain}" }

  # What the controller and the web apps connect to (nats.url, nats.appUrl).
  nats_client_url = join(",", [for node in local.nats_nodes : "tls://${local.nats_hosts[node]}:4222"])
  # What admins give servingctl --server.
  nats_admin_url = "tls://${aws_lb.nats.dns_name}:4222"

  nats_auth_json = sensitive(file("${path.module}/${var.nats_auth_file}"))
  nats_auth      = jsondecode(local.nats_auth_json)

  nats_server_config = {
    for node in local.nats_nodes : node => templatefile("${path.module}/templates/nats.conf.tftpl", {
      server_name      = node
      client_port      = 4222
      cluster_port     = 6222
      http_port        = 8222
      tls_dir          = "/tmp/nats"
      store_dir        = "/data"
      max_memory_store = floor(var.nats_memory / 4) * 1024 * 1024
      max_file_store   = var.nats_storage_gib * 1024 * 1024 * 1024
      cluster_name     = var.name
      route_user       = "route"
      route_password   = random_password.nats_route.result
      routes           = [for n in local.nats_nodes : "${local.nats_hosts[n]}:6222"]
      operator_jwt     = local.nats_auth.operator.jwt
      system_account   = local.nats_auth.system_account.public_key
      # A list, not a map: sensitive values cannot be map keys.
      accounts = [
        for a in [local.nats_auth.system_account, local.nats_auth.account] : { public_key = a.public_key, jwt = a.jwt }
      ]
    })
  }

  # Writes the config and TLS files from the injected secrets, then runs the
  # server. The official alpine image has /bin/sh; the task runs as uid 1000.
  nats_entrypoint = <<-EOT
    set -eu
    umask 077
    mkdir -p /tmp/nats
    printf '%s' "$NATS_CONFIG" > /tmp/nats/nats.conf
    printf '%s' "$NATS_TLS_CERT" > /tmp/nats/server.pem
    printf '%s' "$NATS_TLS_KEY" > /tmp/nats/server-key.pem
    printf '%s' "$NATS_CA" > /tmp/nats/ca.pem
    unset NATS_CONFIG NATS_TLS_CERT NATS_TLS_KEY NATS_CA
    exec nats-server --config /tmp/nats/nats.conf
  EOT
}

resource "random_password" "nats_route" {
  length  = 32
  special = false
}

# --- TLS: a private CA and one server certificate for every node name and the
# NLB, used for client and route connections (routes verify each other). ---

resource "tls_private_key" "nats_ca" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "nats_ca" {
  private_key_pem       = tls_private_key.nats_ca.private_key_pem
  is_ca_certificate     = true
  validity_period_hours = 87600
  allowed_uses          = ["cert_signing", "crl_signing"]

  subject {
    common_name  = "${var.name} NATS CA"
    organization = "servingapp"
  }
}

resource "tls_private_key" "nats_server" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "nats_server" {
  private_key_pem = tls_private_key.nats_server.private_key_pem
  dns_names       = concat(values(local.nats_hosts), [aws_lb.nats.dns_name])

  subject {
    common_name  = "nats.${local.discovery_domain}"
    organization = "servingapp"
  }
}

resource "tls_locally_signed_cert" "nats_server" {
  cert_request_pem   = tls_cert_request.nats_server.cert_request_pem
  ca_private_key_pem = tls_private_key.nats_ca.private_key_pem
  ca_cert_pem        = tls_self_signed_cert.nats_ca.cert_pem
  # Two years; any apply in the last 90 days renews it (and rolls the nodes).
  validity_period_hours = 17520
  early_renewal_hours   = 2160
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
}

# The CA certificate is public: clients trust it through an SSM parameter.
resource "aws_ssm_parameter" "nats_ca" {
  name        = "/${var.name}/nats/ca.pem"
  description = "CA certificate of the servingapp NATS cluster"
  type        = "String"
  value       = tls_self_signed_cert.nats_ca.cert_pem
}

# --- Service discovery ------------------------------------------------------------

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = local.discovery_domain
  description = "servingapp internal names (NATS nodes)"
  vpc         = local.vpc_id
}

resource "aws_service_discovery_service" "nats" {
  for_each = toset(local.nats_nodes)
  name     = each.key

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"

    dns_records {
      ttl  = 10
      type = "A"
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }
}

# --- Storage: EFS, one access point (and directory) per node ------------------------

resource "aws_efs_file_system" "nats" {
  encrypted        = true
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic"

  tags = { Name = "${var.name}-nats" }
}

resource "aws_efs_backup_policy" "nats" {
  file_system_id = aws_efs_file_system.nats.id

  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_file_system_policy" "nats" {
  file_system_id = aws_efs_file_system.nats.id
  policy         = data.aws_iam_policy_document.efs_nats.json
}

resource "aws_efs_mount_target" "nats" {
  count           = length(local.private_subnet_ids)
  file_system_id  = aws_efs_file_system.nats.id
  subnet_id       = local.private_subnet_ids[count.index]
  security_groups = [aws_security_group.efs.id]
}

resource "aws_efs_access_point" "nats" {
  for_each       = toset(local.nats_nodes)
  file_system_id = aws_efs_file_system.nats.id

  posix_user {
    uid = 1000
    gid = 1000
  }

  root_directory {
    path = "/${each.key}"

    creation_info {
      owner_uid   = 1000
      owner_gid   = 1000
      permissions = "0750"
    }
  }

  tags = { Name = "${var.name}-${each.key}" }
}

# --- Security groups ------------------------------------------------------------------

resource "aws_security_group" "nats" {
  name        = "${var.name}-nats"
  description = "servingapp NATS nodes: clients on 4222 from the controller, web apps and admin NLB; routes on 6222 between nodes"
  vpc_id      = local.vpc_id

  tags = { Name = "${var.name}-nats" }
}

resource "aws_vpc_security_group_ingress_rule" "nats_clients" {
  for_each = {
    controller = aws_security_group.controller.id
    apps       = aws_security_group.apps.id
    admin_nlb  = aws_security_group.nats_nlb.id
  }
  security_group_id            = aws_security_group.nats.id
  description                  = "NATS clients: ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = 4222
  to_port                      = 4222
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_ingress_rule" "nats_routes" {
  security_group_id            = aws_security_group.nats.id
  description                  = "Cluster routes between nodes"
  ip_protocol                  = "tcp"
  from_port                    = 6222
  to_port                      = 6222
  referenced_security_group_id = aws_security_group.nats.id
}

resource "aws_vpc_security_group_egress_rule" "nats_routes" {
  security_group_id            = aws_security_group.nats.id
  description                  = "Cluster routes between nodes"
  ip_protocol                  = "tcp"
  from_port                    = 6222
  to_port                      = 6222
  referenced_security_group_id = aws_security_group.nats.id
}

resource "aws_vpc_security_group_egress_rule" "nats_efs" {
  security_group_id            = aws_security_group.nats.id
  description                  = "EFS (NFS over TLS)"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs.id
}

resource "aws_vpc_security_group_egress_rule" "nats_https" {
  security_group_id = aws_security_group.nats.id
  description       = "HTTPS: image pull, Secrets Manager, CloudWatch Logs (Fargate uses the task's network)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "efs" {
  name        = "${var.name}-nats-efs"
  description = "servingapp NATS storage: NFS from the NATS nodes only"
  vpc_id      = local.vpc_id

  tags = { Name = "${var.name}-nats-efs" }
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_nats" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the NATS nodes"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.nats.id
}

resource "aws_security_group" "nats_nlb" {
  name        = "${var.name}-nats-nlb"
  description = "servingapp NATS admin load balancer: 4222 from admin_allowlist only"
  vpc_id      = local.vpc_id

  tags = { Name = "${var.name}-nats-nlb" }
}

resource "aws_vpc_security_group_ingress_rule" "nats_nlb_admins" {
  for_each          = toset(var.admin_allowlist)
  security_group_id = aws_security_group.nats_nlb.id
  description       = "servingctl from the admin allowlist"
  ip_protocol       = "tcp"
  from_port         = 4222
  to_port           = 4222
  cidr_ipv4         = can(regex(":", each.value)) ? null : each.value
  cidr_ipv6         = can(regex(":", each.value)) ? each.value : null
}

resource "aws_vpc_security_group_egress_rule" "nats_nlb_to_nodes" {
  security_group_id            = aws_security_group.nats_nlb.id
  description                  = "To the NATS nodes (traffic and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = 4222
  to_port                      = 4222
  referenced_security_group_id = aws_security_group.nats.id
}

# --- Admin load balancer ---------------------------------------------------------------
# TCP pass-through: NATS negotiates TLS itself, after its INFO line.

resource "aws_lb" "nats" {
  name                             = "${var.name}-nats"
  load_balancer_type               = "network"
  internal                         = true
  subnets                          = local.private_subnet_ids
  security_groups                  = [aws_security_group.nats_nlb.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = !var.allow_destroy

  tags = { Name = "${var.name}-nats" }
}

resource "aws_lb_target_group" "nats" {
  name                 = "${var.name}-nats"
  port                 = 4222
  protocol             = "TCP"
  target_type          = "ip"
  vpc_id               = local.vpc_id
  deregistration_delay = 30

  health_check {
    protocol            = "TCP"
    port                = "traffic-port"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "nats" {
  load_balancer_arn = aws_lb.nats.arn
  port              = 4222
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.nats.arn
  }
}

# --- The nodes ---------------------------------------------------------------------------

resource "aws_ecs_task_definition" "nats" {
  for_each                 = toset(local.nats_nodes)
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.nats_cpu
  memory                   = var.nats_memory
  execution_role_arn       = aws_iam_role.platform_execution.arn
  task_role_arn            = aws_iam_role.nats_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "data"

    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.nats.id
      transit_encryption = "ENABLED"

      authorization_config {
        access_point_id = aws_efs_access_point.nats[each.key].id
        iam             = "ENABLED"
      }
    }
  }

  container_definitions = jsonencode([{
    name       = "nats"
    image      = var.nats_image
    essential  = true
    user       = "1000:1000"
    entryPoint = ["/bin/sh", "-c"]
    command    = [local.nats_entrypoint]
    portMappings = [
      { containerPort = 4222, protocol = "tcp" },
      { containerPort = 6222, protocol = "tcp" },
      { containerPort = 8222, protocol = "tcp" },
    ]
    environment = [
      # A new config or certificate registers a new revision, which restarts the node.
      { name = "CONFIG_SHA256", value = nonsensitive(sha256(join("\n", [local.nats_server_config[each.key], tls_locally_signed_cert.nats_server.cert_pem]))) },
      { name = "GOMEMLIMIT", value = "${floor(var.nats_memory * 0.9)}MiB" },
    ]
    secrets = [
      { name = "NATS_CONFIG", valueFrom = "${aws_secretsmanager_secret.nats_server.arn}:conf_${each.key}::" },
      { name = "NATS_TLS_CERT", valueFrom = "${aws_secretsmanager_secret.nats_server.arn}:server_cert::" },
      { name = "NATS_TLS_KEY", valueFrom = "${aws_secretsmanager_secret.nats_server.arn}:server_key::" },
      { name = "NATS_CA", valueFrom = "${aws_secretsmanager_secret.nats_server.arn}:ca_cert::" },
    ]
    mountPoints = [{ sourceVolume = "data", containerPath = "/data", readOnly = false }]
    healthCheck = {
      command     = ["CMD-SHELL", "wget -q -O /dev/null 'http://127.0.0.1:8222/healthz?js-server-only=true' || exit 1"]
      interval    = 15
      timeout     = 5
      retries     = 4
      startPeriod = 60
    }
    # Lets the server close client connections and flush before SIGKILL.
    stopTimeout = 60
    ulimits     = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this["nats"].name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = each.key
      }
    }
  }])

  lifecycle {
    precondition {
      condition     = contains(local.fargate_memory[var.nats_cpu], var.nats_memory)
      error_message = "nats_memory ${var.nats_memory} is not a Fargate size for nats_cpu ${var.nats_cpu}: use one of ${join(", ", local.fargate_memory[var.nats_cpu])}."
    }
  }

  # The secret must hold the config before a task can start.
  depends_on = [aws_secretsmanager_secret_version.nats_server]
}

resource "aws_ecs_service" "nats" {
  for_each         = toset(local.nats_nodes)
  name             = "${var.name}-${each.key}"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.nats[each.key].arn
  desired_count    = 1
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  # Stop the old task before the new one starts: one writer per data directory.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  health_check_grace_period_seconds  = 60
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    # Spread the nodes over the availability zones.
    subnets          = [local.private_subnet_ids[index(local.nats_nodes, each.key) % length(local.private_subnet_ids)]]
    security_groups  = [aws_security_group.nats.id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.nats[each.key].arn
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.nats.arn
    container_name   = "nats"
    container_port   = 4222
  }

  depends_on = [aws_lb_listener.nats, aws_efs_mount_target.nats, aws_ecs_cluster_capacity_providers.this]
}
