# The two commands a newcomer needs are `make dev` and `make test`.
GO ?= go

.PHONY: dev test lint fmt schema bench build tf-fmt

dev: ## run everything on one machine: embedded NATS, Databricks emulator, controller, apps
	$(GO) run ./cmd/servingctl dev

test: ## every test, with the race detector
	$(GO) test -race ./...

lint: ## go vet, staticcheck and gofmt
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

schema: ## regenerate manifests/servingapp.schema.json from the Go types
	$(GO) test ./api/v1alpha1 -run TestSchemaFileIsInSyncWithTypes -update

bench: ## the benchmarks whose figures the closing notes quote (about 15 minutes)
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./api/store/
	$(GO) test -run '^$$' -bench RuntimeThroughput1000 -benchtime 10x ./controller/
	$(GO) test -run '^$$' -bench ApplyLatencyBehindResync -benchtime 200x ./controller/
	$(GO) test -run '^$$' -bench Fleet -benchtime 1x ./controller/aws/
	$(GO) test -run '^$$' -bench 'TokenExchange|Invocation' ./internal/databricks/emulator/
	$(GO) test -run '^$$' -bench AuthenticatedAPIMe -benchtime 20000x ./webapp/
	$(GO) test -run '^$$' -bench InvocationAddedLatency -benchtime 2000x ./webapp/
	$(GO) test -run '^$$' -bench Publisher ./api/audit/
	$(GO) test -run '^$$' -bench AuditIngest -benchtime 200000x ./controller/usage/
	$(GO) test -run '^$$' -bench AuditTail -benchtime 5x -timeout 30m ./cmd/servingctl/
	$(GO) test -run '^$$' -bench ApplyToReady -benchtime 20x ./internal/devstack/

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

tf-fmt: ## terraform fmt -check (builds Terraform 1.5.7 on first use, ~4 min on 2 cores; not run by CI)
	@command -v terraform >/dev/null 2>&1 || $(GO) install github.com/hashicorp/terraform@v1.5.7
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" terraform fmt -check -recursive -diff terraform/
