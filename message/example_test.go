package message_test

import (
	"errors"
	"fmt"

	"github.com/distrirender/distrirender/message"
	"github.com/google/uuid"
)

func Example() {
	src := uuid.MustParse("6ba7b810-9dad-41d1-80b4-00c04fd430c8")
	dst := uuid.MustParse("3f0a1c2e-7b4d-4e8f-9a1b-2c3d4e5f6a7b")

	// A unicast data message: index 17 of src's stream, window base 10.
	m := message.Message{
		UID:    message.UID{Node: src, Index: 17},
		Header: message.Header{Type: message.TypeMsg, HopLimit: 16, Target: dst, Epoch: 1, Ref: 10},
		Body:   []byte("tile 3/64"),
	}
	frame := m.Encode()
	fmt.Println("frame bytes:", len(frame))

	got, err := message.Decode(frame, 0)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s #%d to %s: %q\n", got.Header.Type, got.UID.Index, got.Header.Target, got.Body)

	// Its acknowledgement: index -1, the acknowledged position in an Ack body.
	ack := message.Message{
		UID:    message.UID{Node: dst, Index: message.AckIndex},
		Header: message.Header{Type: message.TypeAck, HopLimit: 16, Target: src, Epoch: 5},
		Body:   message.Ack{StreamEpoch: 1, Cum: 18}.Append(nil),
	}
	got, err = message.Decode(ack.Encode(), 0)
	if err != nil {
		panic(err)
	}
	a, err := message.DecodeAck(got.Body)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s index %d: everything before %d delivered\n", got.Header.Type, got.UID.Index, a.Cum)

	// A cut frame is rejected with a classified error.
	_, err = message.Decode(frame[:30], 0)
	fmt.Println(errors.Is(err, message.ErrTruncated), err)

	// Output:
	// frame bytes: 65
	// msg #17 to 3f0a1c2e-7b4d-4e8f-9a1b-2c3d4e5f6a7b: "tile 3/64"
	// ack index -1: everything before 18 delivered
	// true message: truncated: header needs 56 bytes, 30 present (offset 30)
}
