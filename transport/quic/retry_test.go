package quic

import (
	"testing"
	"time"
)

func TestRetryPolicy(t *testing.T) {
	now := time.Unix(0, 0)
	p := newRetryPolicy(func() time.Time { return now })
	for i := range retryBurst {
		if p.verify(nil) {
			t.Fatalf("attempt %d of the burst validated", i)
		}
	}
	if !p.verify(nil) {
		t.Fatal("an attempt past the burst was not validated")
	}
	now = now.Add(time.Second)
	for i := range retryRate {
		if p.verify(nil) {
			t.Fatalf("attempt %d a second later validated", i)
		}
	}
	if !p.verify(nil) {
		t.Fatal("an attempt past the rate was not validated")
	}
}
