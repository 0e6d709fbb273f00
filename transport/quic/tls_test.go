package quic_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/quic"
)

// ca is a throwaway certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &ca{cert: cert, key: key, pool: pool}
}

// issue makes a leaf certificate for the loopback addresses and localhost,
// good for both server and client authentication.
func (c *ca) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// roundTrip dials to from from, sends a frame and checks it arrives.
func roundTrip(t *testing.T, from, to *quic.Transport, addr string) {
	t.Helper()
	ctx := ctxT(t)
	e, err := from.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("Dial(%q): %v", addr, err)
	}
	defer e.Close()
	a, err := to.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	defer a.Close()
	if err := e.Send(ctx, []byte("verified")); err != nil {
		t.Fatal(err)
	}
	if f, err := a.Receive(ctx); err != nil || string(f) != "verified" {
		t.Fatalf("Receive = %q, %v", f, err)
	}
}

func TestCustomTLS(t *testing.T) {
	good, other := newCA(t, "mesh CA"), newCA(t, "some other CA")
	server := listen(t, quic.Config{TLS: &tls.Config{Certificates: []tls.Certificate{good.issue(t, "server")}}})

	t.Run("VerifyingClient", func(t *testing.T) {
		// No certificate of its own: the client's transport accepts with a
		// generated one, and verifies the server against the CA.
		client := listen(t, quic.Config{TLS: &tls.Config{RootCAs: good.pool}})
		roundTrip(t, client, server, server.Addrs()[0])
	})
	t.Run("VerifyingClientByName", func(t *testing.T) {
		if _, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip4", "localhost"); err != nil {
			t.Skipf("localhost does not resolve: %v", err)
		}
		client := listen(t, quic.Config{TLS: &tls.Config{RootCAs: good.pool}})
		_, port, _ := net.SplitHostPort(server.Addrs()[0])
		roundTrip(t, client, server, net.JoinHostPort("localhost", port))
	})
	t.Run("DefaultClient", func(t *testing.T) {
		// The default accepts any certificate, this one too.
		roundTrip(t, listen(t, quic.Config{}), server, server.Addrs()[0])
	})
	t.Run("WrongCA", func(t *testing.T) {
		client := listen(t, quic.Config{TLS: &tls.Config{RootCAs: other.pool}})
		e, err := client.Dial(ctxT(t), server.Addrs()[0])
		if err == nil {
			_ = e.Close()
			t.Fatal("Dial verifying against the wrong CA succeeded")
		}
		var unknown x509.UnknownAuthorityError
		if !errors.Is(err, transport.ErrUnreachable) || !errors.As(err, &unknown) {
			t.Fatalf("Dial: %v; want ErrUnreachable wrapping x509.UnknownAuthorityError", err)
		}
		t.Logf("wrong CA: %v", err)
	})
	t.Run("WrongName", func(t *testing.T) {
		client := listen(t, quic.Config{TLS: &tls.Config{RootCAs: good.pool, ServerName: "not-the-server.example"}})
		e, err := client.Dial(ctxT(t), server.Addrs()[0])
		if err == nil {
			_ = e.Close()
			t.Fatal("Dial verifying the wrong server name succeeded")
		}
		if !errors.Is(err, transport.ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("Dial: %v; want ErrUnreachable and a certificate error", err)
		}
	})
}

// TestMutualTLS has the server require client certificates from its CA.
func TestMutualTLS(t *testing.T) {
	good, other := newCA(t, "mesh CA"), newCA(t, "some other CA")
	mtls := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      good.pool,
			ClientCAs:    good.pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
		}
	}
	server := listen(t, quic.Config{TLS: mtls(good.issue(t, "server"))})
	t.Run("GoodClient", func(t *testing.T) {
		roundTrip(t, listen(t, quic.Config{TLS: mtls(good.issue(t, "client"))}), server, server.Addrs()[0])
	})
	t.Run("ForeignClient", func(t *testing.T) {
		client := listen(t, quic.Config{TLS: &tls.Config{Certificates: []tls.Certificate{other.issue(t, "intruder")}, RootCAs: good.pool}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// In TLS 1.3 the client may finish its side of the handshake before
		// the server checks its certificate: the refusal shows up either in
		// Dial or as the edge closing. The server never accepts an edge.
		e, err := client.Dial(ctx, server.Addrs()[0])
		if err == nil {
			defer e.Close()
			if _, err = e.Receive(ctx); !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("Receive on a refused edge: %v, want ErrClosed", err)
			}
		}
		t.Logf("foreign client: %v", err)
		actx, acancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer acancel()
		if a, err := server.Accept(actx); err == nil {
			_ = a.Close()
			t.Fatal("server accepted a client with a foreign certificate")
		}
	})
}
