package quic

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// selfSigned makes a fresh self-signed ECDSA P-256 certificate, valid from an
// hour ago (for clocks slightly behind) for a year.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "distrirender-mesh"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// tlsConfigs derives the server and client TLS configurations from the user's
// (nil for the defaults). Both speak only TLS 1.3 and only our ALPN.
func tlsConfigs(user *tls.Config) (server, client *tls.Config, err error) {
	if user == nil {
		cert, err := selfSigned()
		if err != nil {
			return nil, nil, fmt.Errorf("quic: generating a certificate: %w", err)
		}
		server = &tls.Config{Certificates: []tls.Certificate{cert}}
		// The mesh authenticates nothing yet: accept whatever the peer shows.
		client = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // documented: no authentication by default
	} else {
		server, client = user.Clone(), user.Clone()
		if len(server.Certificates) == 0 && server.GetCertificate == nil && server.GetConfigForClient == nil {
			cert, err := selfSigned()
			if err != nil {
				return nil, nil, fmt.Errorf("quic: generating a certificate: %w", err)
			}
			server.Certificates = []tls.Certificate{cert}
		}
	}
	for _, c := range []*tls.Config{server, client} {
		c.NextProtos = []string{ALPN}
		c.MinVersion = tls.VersionTLS13
	}
	return server, client, nil
}
