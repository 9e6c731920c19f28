# IAM: five roles, each with only what its tasks do. Every policy is an
# aws_iam_policy_document so terraform_test.go can read its statements; the
# few statements on Resource "*" are listed there with the reason AWS offers
# nothing narrower.
#
#   platform_execution  starts the controller and NATS tasks: pulls the controller
#                       image, writes their logs, reads their config and secrets
#   app_execution       starts the web app tasks: pulls the web app image, writes
#                       app logs, reads app secrets under <name>/
#   controller_task     the controller: ECS, ELBv2 and Secrets Manager, limited to
#                       this cluster, this listener, <name>/ secrets and resources
#                       tagged servingapp.io/managed-by = controller id
#   webapp_task         the web apps: nothing (they talk to NATS and Databricks over
#                       the network and get their secrets through app_execution)
#   nats_task           the NATS nodes: mount their EFS access point

locals {
  # The controller names ECS services and task definition families
  # "<controller id>_<namespace>_<name>" and target groups "sa-…"
  # (controller/aws/names.go), which narrows its resources further.
  controller_ecs_prefix    = "${replace(local.controller_id, "/[^A-Za-z0-9_-]/", "-")}_"
  ecs_services_arn         = "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:service/${aws_ecs_cluster.this.name}/${local.controller_ecs_prefix}*"
  ecs_task_definitions_arn = "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:task-definition/${local.controller_ecs_prefix}*:*"
  target_groups_arn        = "arn:${local.partition}:elasticloadbalancing:${var.aws_region}:${local.account_id}:targetgroup/sa-*/*"
  # Rules of the HTTPS listener only: listener-rule/app/<lb>/<lb-id>/<listener-id>/<rule-id>.
  listener_rules_arn = "${replace(aws_lb_listener.https.arn, ":listener/", ":listener-rule/")}/*"
  app_secrets_arn    = "arn:${local.partition}:secretsmanager:${var.aws_region}:${local.account_id}:secret:${local.secret_prefix}*"
  # The controller creates secrets only under <name>/apps/ (secretPrefix), so
  # it can never tag or change the ones Terraform or people keep under <name>/.
  controller_secrets_arn = "arn:${local.partition}:secretsmanager:${var.aws_region}:${local.account_id}:secret:${local.controller_secret_prefix}*"
}

# --- Trust ------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    sid     = "EcsTasksOfThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:*"]
    }
  }
}

# --- platform_execution -------------------------------------------------------------

resource "aws_iam_role" "platform_execution" {
  name               = "${var.name}-platform-execution"
  description        = "Starts the servingapp controller and NATS tasks"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "platform_execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullControllerImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.this["controller"].arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this["controller"].arn}:*", "${aws_cloudwatch_log_group.this["nats"].arn}:*"]
  }

  statement {
    sid     = "ReadPlatformSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_secretsmanager_secret.nats_controller_creds.arn,
      aws_secretsmanager_secret.nats_server.arn,
    ]
  }

  statement {
    sid       = "ReadControllerConfig"
    actions   = ["ssm:GetParameters"]
    resources = [aws_ssm_parameter.controller_config.arn, aws_ssm_parameter.nats_ca.arn]
  }
}

resource "aws_iam_role_policy" "platform_execution" {
  name   = "start-platform-tasks"
  role   = aws_iam_role.platform_execution.id
  policy = data.aws_iam_policy_document.platform_execution.json
}

# --- app_execution ---------------------------------------------------------------------

resource "aws_iam_role" "app_execution" {
  name               = "${var.name}-app-execution"
  description        = "Starts the servingapp web app tasks the controller creates"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "app_execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullWebappImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.this["webapp"].arn]
  }

  statement {
    sid       = "WriteAppLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this["apps"].arn}:*"]
  }

  # Session keys and OAuth client secrets the controller creates, the web apps'
  # NATS creds, clientSecretRef and spec.secrets under <name>/, plus extras.
  statement {
    sid       = "ReadAppSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([local.app_secrets_arn], var.app_secret_arns)
  }

  # The account service principal can create and delete OAuth apps: only the
  # controller reads it, even though it lives under <name>/.
  statement {
    sid       = "NeverTheAccountServicePrincipal"
    effect    = "Deny"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.databricks_account.arn]
  }
}

resource "aws_iam_role_policy" "app_execution" {
  name   = "start-web-app-tasks"
  role   = aws_iam_role.app_execution.id
  policy = data.aws_iam_policy_document.app_execution.json
}

# --- webapp_task ----------------------------------------------------------------------------

resource "aws_iam_role" "webapp_task" {
  name               = "${var.name}-webapp-task"
  description        = "Role of the servingapp web app containers: no permissions"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

# --- controller_task --------------------------------------------------------------------------

resource "aws_iam_role" "controller_task" {
  name               = "${var.name}-controller-task"
  description        = "Role of the servingapp controller: ECS, ELBv2 and Secrets Manager for the apps it manages"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "controller_task" {
  # ECS services in this cluster: create only tagged as ours, change only ours.
  statement {
    sid       = "EcsCreateServices"
    actions   = ["ecs:CreateService"]
    resources = [local.ecs_services_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid       = "EcsChangeOwnServices"
    actions   = ["ecs:UpdateService", "ecs:DeleteService"]
    resources = [local.ecs_services_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid       = "EcsReadServices"
    actions   = ["ecs:DescribeServices"]
    resources = [local.ecs_services_arn]
  }

  statement {
    sid       = "EcsListServices"
    actions   = ["ecs:ListServices"]
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  # Task definitions have no resource-level permissions for these actions.
  statement {
    sid       = "EcsRegisterTaskDefinitions"
    actions   = ["ecs:RegisterTaskDefinition"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid       = "EcsDeregisterTaskDefinitions"
    actions   = ["ecs:DeregisterTaskDefinition"]
    resources = ["*"]
  }

  statement {
    sid       = "EcsReadTaskDefinitions"
    actions   = ["ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"]
    resources = ["*"]
  }

  # Tagging: at creation (tags in CreateService / RegisterTaskDefinition), or
  # on resources already ours.
  statement {
    sid       = "EcsTagOnCreate"
    actions   = ["ecs:TagResource"]
    resources = [local.ecs_services_arn, local.ecs_task_definitions_arn]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["CreateService", "RegisterTaskDefinition"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid       = "EcsTagOwn"
    actions   = ["ecs:TagResource", "ecs:UntagResource"]
    resources = [local.ecs_services_arn, local.ecs_task_definitions_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  # ELBv2: target groups, and rules on the HTTPS listener only.
  statement {
    sid       = "ElbCreateTargetGroups"
    actions   = ["elasticloadbalancing:CreateTargetGroup"]
    resources = [local.target_groups_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid       = "ElbCreateRules"
    actions   = ["elasticloadbalancing:CreateRule"]
    resources = [aws_lb_listener.https.arn]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid       = "ElbTagOnCreate"
    actions   = ["elasticloadbalancing:AddTags"]
    resources = [local.target_groups_arn, local.listener_rules_arn]

    condition {
      test     = "StringEquals"
      variable = "elasticloadbalancing:CreateAction"
      values   = ["CreateTargetGroup", "CreateRule"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid       = "ElbChangeOwnTargetGroups"
    actions   = ["elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes"]
    resources = [local.target_groups_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid       = "ElbChangeOwnRules"
    actions   = ["elasticloadbalancing:ModifyRule", "elasticloadbalancing:DeleteRule", "elasticloadbalancing:SetRulePriorities"]
    resources = [local.listener_rules_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid       = "ElbTagOwn"
    actions   = ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"]
    resources = [local.target_groups_arn, local.listener_rules_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  # DescribeAccountLimits: the rule and target group quotas, checked before
  # creating either (controller/aws/listener.go).
  statement {
    sid = "ElbRead"
    actions = [
      "elasticloadbalancing:DescribeAccountLimits",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeRules",
      "elasticloadbalancing:DescribeTargetGroups",
      "elasticloadbalancing:DescribeTargetGroupAttributes",
      "elasticloadbalancing:DescribeTags",
    ]
    resources = ["*"]
  }

  # Secrets Manager: create (tagged as ours) and change (only ours) under
  # <name>/apps/; read anything under <name>/ (the account service principal,
  # clientSecretRef secrets).
  statement {
    sid       = "SecretsCreate"
    actions   = ["secretsmanager:CreateSecret", "secretsmanager:TagResource"]
    resources = [local.controller_secrets_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid = "SecretsChangeOwn"
    actions = [
      "secretsmanager:PutSecretValue",
      "secretsmanager:DeleteSecret",
      "secretsmanager:RestoreSecret",
      "secretsmanager:TagResource",
      "secretsmanager:UntagResource",
    ]
    resources = [local.controller_secrets_arn]

    condition {
      test     = "StringEquals"
      variable = "secretsmanager:ResourceTag/${local.managed_by_tag}"
      values   = [local.controller_id]
    }
  }

  statement {
    sid       = "SecretsRead"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [local.app_secrets_arn]
  }

  statement {
    sid       = "SecretsList"
    actions   = ["secretsmanager:ListSecrets"]
    resources = ["*"]
  }

  # The two roles of the task definitions it registers, to ECS only.
  statement {
    sid       = "PassAppRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.app_execution.arn, aws_iam_role.webapp_task.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "controller_task" {
  name   = "manage-serving-apps"
  role   = aws_iam_role.controller_task.id
  policy = data.aws_iam_policy_document.controller_task.json
}

# --- nats_task -------------------------------------------------------------------------------

resource "aws_iam_role" "nats_task" {
  name               = "${var.name}-nats-task"
  description        = "Role of the servingapp NATS nodes: mount their EFS access point"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "nats_task" {
  statement {
    sid       = "MountNodeStorage"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.nats.arn]

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [for ap in aws_efs_access_point.nats : ap.arn]
    }
  }
}

resource "aws_iam_role_policy" "nats_task" {
  name   = "mount-nats-storage"
  role   = aws_iam_role.nats_task.id
  policy = data.aws_iam_policy_document.nats_task.json
}

# The file system's own policy: TLS only, and only the NATS role through its
# access points.
data "aws_iam_policy_document" "efs_nats" {
  statement {
    sid       = "NatsNodesThroughAccessPoints"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.nats.arn]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.nats_task.arn]
    }

    condition {
      test     = "Bool"
      variable = "elasticfilesystem:AccessedViaMountTarget"
      values   = ["true"]
    }

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [for ap in aws_efs_access_point.nats : ap.arn]
    }
  }

  statement {
    sid       = "TLSOnly"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"]
    resources = [aws_efs_file_system.nats.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}
