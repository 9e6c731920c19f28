# The ECS cluster every servingapp task runs in: the controller, the NATS
# nodes and the web apps the controller creates.

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  # Services that name no capacity provider run on on-demand Fargate.
  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = 1
    weight            = 1
  }
}

locals {
  # Valid Fargate memory sizes (MiB) per CPU value.
  fargate_memory = {
    256  = [512, 1024, 2048]
    512  = [1024, 2048, 3072, 4096]
    1024 = [for gib in range(2, 9) : gib * 1024]
    2048 = [for gib in range(4, 17) : gib * 1024]
    4096 = [for gib in range(8, 31) : gib * 1024]
  }
}
