# The two commands of the README's quick start are
# `go run ./cmd/distrirender render` and `make test`; the rest are conveniences.
GO ?= go

.PHONY: test render meshdemo bench fuzz vet

# test: vet, then every test with the race detector. CI runs exactly this.
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...

vet:
	$(GO) vet ./...

render:
	$(GO) run ./cmd/distrirender render

meshdemo:
	$(GO) run ./cmd/meshdemo

# bench: every benchmark once, with allocations (see docs/BENCHMARKS.md).
bench:
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
