# The VPC: created here (public subnets for the ALB and NAT gateways, private
# subnets for every task, NATS, EFS and the internal NLB), or an existing one
# given by vpc_id and its subnets.

locals {
  create_vpc = var.vpc_id == ""

  azs = slice(data.aws_availability_zones.available.names, 0, var.availability_zone_count)

  vpc_id             = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  public_subnet_ids  = local.create_vpc ? aws_subnet.public[*].id : var.public_subnet_ids
  private_subnet_ids = local.create_vpc ? aws_subnet.private[*].id : var.private_subnet_ids

  # The ALB's subnets: the web apps believe X-Forwarded-For/-Proto only from them.
  alb_subnet_ids   = var.alb_internal ? local.private_subnet_ids : local.public_subnet_ids
  alb_subnet_cidrs = local.create_vpc ? (var.alb_internal ? aws_subnet.private[*].cidr_block : aws_subnet.public[*].cidr_block) : [for id in local.alb_subnet_ids : data.aws_subnet.existing[id].cidr_block]
}

data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

# --- Reused VPC ---------------------------------------------------------------

data "aws_vpc" "existing" {
  count = local.create_vpc ? 0 : 1
  id    = var.vpc_id

  lifecycle {
    postcondition {
      condition     = length(var.public_subnet_ids) >= 2 && length(var.private_subnet_ids) >= 2
      error_message = "With vpc_id, give at least two public_subnet_ids and two private_subnet_ids in different availability zones."
    }
    postcondition {
      condition     = self.enable_dns_support && self.enable_dns_hostnames
      error_message = "The VPC needs DNS support and DNS hostnames enabled (service discovery and EFS mount targets resolve through them)."
    }
  }
}

data "aws_subnet" "existing" {
  for_each = local.create_vpc ? toset([]) : toset(concat(var.public_subnet_ids, var.private_subnet_ids))
  id       = each.value

  lifecycle {
    postcondition {
      condition     = self.vpc_id == var.vpc_id
      error_message = "Subnet ${self.id} is not in vpc_id ${var.vpc_id}."
    }
  }
}

# --- Created VPC --------------------------------------------------------------

resource "aws_vpc" "this" {
  count                = local.create_vpc ? 1 : 0
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

resource "aws_internet_gateway" "this" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id

  tags = { Name = var.name }
}

resource "aws_subnet" "public" {
  count             = local.create_vpc ? var.availability_zone_count : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  # /24 slices at the start of a /16 (smaller for longer prefixes).
  cidr_block = cidrsubnet(var.vpc_cidr, 8, count.index)

  tags = { Name = "${var.name}-public-${local.azs[count.index]}" }
}

resource "aws_subnet" "private" {
  count             = local.create_vpc ? var.availability_zone_count : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  # /20 slices of a /16 after the first one, which holds the public subnets.
  cidr_block = cidrsubnet(var.vpc_cidr, 4, count.index + 1)

  tags = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_eip" "nat" {
  count  = local.create_vpc ? (var.single_nat_gateway ? 1 : var.availability_zone_count) : 0
  domain = "vpc"

  tags = { Name = "${var.name}-nat-${count.index}" }
}

resource "aws_nat_gateway" "this" {
  count         = local.create_vpc ? (var.single_nat_gateway ? 1 : var.availability_zone_count) : 0
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id

  tags = { Name = "${var.name}-${local.azs[count.index]}" }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this[0].id
  }

  tags = { Name = "${var.name}-public" }
}

resource "aws_route_table_association" "public" {
  count          = local.create_vpc ? var.availability_zone_count : 0
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table" "private" {
  count  = local.create_vpc ? var.availability_zone_count : 0
  vpc_id = aws_vpc.this[0].id

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[var.single_nat_gateway ? 0 : count.index].id
  }

  tags = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_route_table_association" "private" {
  count          = local.create_vpc ? var.availability_zone_count : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# Image layers come from S3: a gateway endpoint keeps those pulls off the NAT
# gateways (free, and faster).
resource "aws_vpc_endpoint" "s3" {
  count             = local.create_vpc ? 1 : 0
  vpc_id            = aws_vpc.this[0].id
  service_name      = "com.amazonaws.${var.aws_region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id

  tags = { Name = "${var.name}-s3" }
}

# --- Security groups ------------------------------------------------------------
# The web apps' group lives here; the ALB's, the controller's and NATS's live
# with their resources. Rules are separate resources so groups can refer to
# each other without cycles.

# The web app tasks the controller runs (aws.securityGroups in its config).
resource "aws_security_group" "apps" {
  name        = "${var.name}-apps"
  description = "servingapp web app tasks: 8080 from the ALB; out to HTTPS (Databricks, AWS APIs) and NATS"
  vpc_id      = local.vpc_id

  tags = { Name = "${var.name}-apps" }
}

resource "aws_vpc_security_group_ingress_rule" "apps_from_alb" {
  security_group_id            = aws_security_group.apps.id
  description                  = "From the ALB"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "apps_https" {
  security_group_id = aws_security_group.apps.id
  description       = "HTTPS: Databricks workspaces, Secrets Manager, ECR, CloudWatch Logs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "apps_nats" {
  security_group_id            = aws_security_group.apps.id
  description                  = "NATS clients"
  ip_protocol                  = "tcp"
  from_port                    = 4222
  to_port                      = 4222
  referenced_security_group_id = aws_security_group.nats.id
}
