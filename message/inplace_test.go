package message

import (
	"testing"

	"github.com/google/uuid"
)

func TestInPlaceEdits(t *testing.T) {
	m := Message{UID: UID{Node: uuid.New(), Index: 1234}, Header: Header{Type: TypeEntryRequest, HopLimit: 2}, Body: []byte("x")}
	f := m.Encode()
	if got := PeekType(f); got != TypeEntryRequest {
		t.Fatalf("PeekType = %v", got)
	}
	if got := PeekType(f[:HeaderSize-1]); got != 0 {
		t.Fatalf("PeekType of a short frame = %v, want 0", got)
	}
	cases := []struct {
		name    string
		ok      bool
		wantHop uint8
	}{
		{"2 -> 1", true, 1},
		{"1 stays", false, 1},
		{"still 1", false, 1},
	}
	for _, c := range cases {
		if ok := DecrementHopLimit(f); ok != c.ok {
			t.Fatalf("%s: DecrementHopLimit = %v", c.name, ok)
		}
		d, err := Decode(f, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.Header.HopLimit != c.wantHop || d.UID.Index != 1234 || string(d.Body) != "x" {
			t.Fatalf("%s: decoded %+v", c.name, d)
		}
	}
	if DecrementHopLimit(f[:10]) {
		t.Fatal("a short frame may travel on")
	}
}
