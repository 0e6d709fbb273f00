# The two commands of the README's quick start are
# `go run ./cmd/distrirender render` and `make test`; the rest are conveniences.
GO ?= go

.PHONY: test render meshdemo bench bench-go fuzz vet soak

# test: vet, then every test with the race detector, then the simulator's
# 1,000-node mesh, which needs no race detector (one goroutine) and is ten
# times slower under it. CI runs exactly this.
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -count=1 -timeout 20m -run '^TestSimScale$$' ./node/internal/sim/

vet:
	$(GO) vet ./...

render:
	$(GO) run ./cmd/distrirender render

meshdemo:
	$(GO) run ./cmd/meshdemo

# bench: meshbench, every transport side by side (raw library, edge, mesh),
# with a Markdown table on stdout and JSON and charts in meshbench-out/
# (under 15 minutes; BENCHFLAGS=--quick for under one). See docs/BENCHMARKS.md.
BENCHFLAGS ?=
bench:
	$(GO) run ./cmd/meshbench $(BENCHFLAGS)

# bench-go: every go-test benchmark once, with allocations.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# soak: the simulator's random-event property test on SIM_SEEDS seeds
# (default 5000), stopping after SIM_BUDGET seconds (default 600); a failing
# run prints its seed and how to replay it.
SIM_SEEDS ?= 5000
SIM_BUDGET ?= 600
soak:
	SIM_SEEDS=$(SIM_SEEDS) SIM_BUDGET=$(SIM_BUDGET) $(GO) test -count=1 -timeout 2h -run '^TestSimProperty$$' ./node/internal/sim/

# fuzz: each fuzz target for FUZZTIME (default 60s), from the checked-in corpus.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./message/
	$(GO) test -run '^$$' -fuzz '^FuzzPayloads$$' -fuzztime $(FUZZTIME) ./message/
	$(GO) test -run '^$$' -fuzz '^FuzzUnpack$$' -fuzztime $(FUZZTIME) ./transport/webrtc/internal/bpack/
	$(GO) test -run '^$$' -fuzz '^FuzzReceiver$$' -fuzztime $(FUZZTIME) ./reliability/
	$(GO) test -run '^$$' -fuzz '^FuzzSenderAcks$$' -fuzztime $(FUZZTIME) ./reliability/
	$(GO) test -run '^$$' -fuzz '^FuzzTable$$' -fuzztime $(FUZZTIME) ./routing/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./render/
