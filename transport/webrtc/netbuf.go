package webrtc

import (
	"net"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// udpBuffer is the receive and send buffer the transport asks for on each
// of its UDP sockets. The system's default (208 KiB on Linux, of which a
// 1200-byte packet takes twice its size) holds fewer packets than SCTP keeps
// in flight once its window has grown, so a busy receiver drops packets and
// SCTP halves its rate; measured on loopback, a fifth of the throughput
// went that way. Linux caps the request at net.core.rmem_max and
// wmem_max.
const udpBuffer = 4 << 20

// bufferedNet is the system's network, but for UDP sockets with larger
// buffers.
type bufferedNet struct{ *stdnet.Net }

func newBufferedNet() (transport.Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return bufferedNet{n}, nil
}

// ListenUDP implements transport.Net.
func (n bufferedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if b, ok := c.(interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}); ok {
		_ = b.SetReadBuffer(udpBuffer) // best effort: the default still works
		_ = b.SetWriteBuffer(udpBuffer)
	}
	return c, nil
}
