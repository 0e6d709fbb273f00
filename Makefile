# The two commands of the README's quick start are
# `go run ./cmd/distrirender render` and `make test`; the rest are conveniences.
GO ?= go

.PHONY: test render meshdemo bench bench-go fuzz vet

# test: vet, then every test with the race detector. CI runs exactly this.
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...

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
